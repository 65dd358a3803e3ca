#!/usr/bin/env bash
# TLS handshakes per second a broker takes on one listener, and its CPU per handshake: what an outage's
# reconnect storm of TLS sensors costs. Sluice serves every client connection from the broker's event loop
# (as Mosquitto does from its one thread), so handshakes share that thread with routing.
#
#   bash scripts/tls-connrate.sh SLUICE_BINARY [CLIENTS] [SECONDS] [ROUNDS]
#
# Runs Sluice and Mosquitto (/usr/sbin/mosquitto) one after the other, ROUNDS times (default 3), each on a
# free loopback port with fixtures/tls/server.pem (EC P-256) and TLS 1.3, and CLIENTS (default 4) parallel
# `openssl s_time -new` for SECONDS (default 10): full handshakes, no session reuse. Prints per round the
# handshakes/s of all clients, the broker's CPU (utime+stime) per handshake, and Sluice ÷ Mosquitto.
set -euo pipefail
sluice=${1:?usage: tls-connrate.sh SLUICE_BINARY [CLIENTS] [SECONDS] [ROUNDS]}
clients=${2:-4}
seconds=${3:-10}
rounds=${4:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
tls="$here/fixtures/tls"
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One measurement: prints "handshakes/s cpu-µs-per-handshake".
measure() {
    local kind=$1 port
    port=$(free_port)
    local conf="$work/$kind.conf"
    printf 'listener %s 127.0.0.1\ncertfile %s\nkeyfile %s\nallow_anonymous true\n' \
        "$port" "$tls/server.pem" "$tls/server.key.pem" >"$conf"
    if [ "$kind" = sluice ]; then
        printf 'persistence false\npersistence_location %s/\n' "$work" >>"$conf"
        "$sluice" run --config "$conf" >"$work/$kind.log" 2>&1 &
    else
        /usr/sbin/mosquitto -c "$conf" >"$work/$kind.log" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    local hz before after
    hz=$(getconf CLK_TCK)
    before=$(cpu_ticks "$pid")
    local outs=()
    for c in $(seq "$clients"); do
        openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 -time "$seconds" >"$work/client$c.out" 2>&1 &
        outs+=($!)
    done
    wait "${outs[@]}"
    after=$(cpu_ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    local total
    total=$(cat "$work"/client*.out | awk '/connections in [0-9.]+ real seconds/ {n += $1} END {print n + 0}')
    awk -v n="$total" -v s="$seconds" -v t=$((after - before)) -v hz="$hz" \
        'BEGIN { printf "%.0f %.1f\n", n / s, (n > 0 ? t / hz * 1e6 / n : 0) }'
}

echo "TLS 1.3 full handshakes, $clients parallel 'openssl s_time -new' for ${seconds} s, EC P-256 server key"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
    read -r s_rate s_cpu < <(measure sluice)
    read -r m_rate m_cpu < <(measure mosquitto)
    awk -v r="$r" -v sr="$s_rate" -v sc="$s_cpu" -v mr="$m_rate" -v mc="$m_cpu" 'BEGIN {
        printf "round %d: sluice %s handshakes/s, %s us CPU each | mosquitto %s/s, %s us | rate %.2fx, CPU %.2fx\n",
            r, sr, sc, mr, mc, (mr > 0 ? sr / mr : 0), (mc > 0 ? sc / mc : 0) }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
