#!/usr/bin/env bash
# Issue 17's rows measured with scripts/mqtt-loadgen.c, a load generator on libmosquitto that shares no code
# with sluice-bench. Needs a C compiler and libmosquitto's headers (Debian: apt-get install libmosquitto-dev;
# not in install-deps.sh, as no test uses it) and /usr/sbin/mosquitto (2.0.11 here) to compare against.
#
#   scripts/loadgen.sh build                          # -> $LOADGEN (default /tmp/mqtt-loadgen)
#   scripts/loadgen.sh one mosquitto|sluice SLUICE_BIN paced|closed [generator options]
#   scripts/loadgen.sh table SLUICE_BIN [ROUNDS] [ROW,ROW...]   # rows below; log in $LOADGEN_LOG
#   scripts/loadgen.sh summary LOG                    # medians and Sluice / Mosquitto per row
#
# Each run starts a fresh broker on a free loopback port with sluice-bench's configs (Brokers.swift,
# FairConfig): both get "listener PORT 127.0.0.1", "allow_anonymous true", "max_queued_messages 0";
# Mosquitto also "user root" and "log_dest stderr", Sluice "persistence_location DIR/". Rounds alternate
# the order (Mosquitto first in odd rounds, Sluice first in even ones); each run's 1-minute load is logged.
# MOSQUITTO_EXTRA="set_tcp_nodelay true" adds a line to Mosquitto's config (its default leaves Nagle on its
# client sockets; Sluice always sets TCP_NODELAY); BROKER_EXTRA adds a line to both configs. LOADGEN_NICE=-10 runs broker and generator at that nice
# level (root only), both brokers alike: on a machine busy with builds it keeps their share of the cores.
# LOADGEN_ARGS="--tick-us 1000" appends generator options to every row of a table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LOADGEN="${LOADGEN:-/tmp/mqtt-loadgen}"
MOSQUITTO="${MOSQUITTO:-/usr/sbin/mosquitto}"

declare -A ROWS=(
    [paced-fanin-q1]="paced --pubs 10 --subs 1 --qos 1 --rate 20000 --seconds 10 --window 100"
    [paced-fanin-q0]="paced --pubs 10 --subs 1 --qos 0 --rate 20000 --seconds 10"
    [paced-1to1-q2]="paced --pubs 1 --subs 1 --qos 2 --rate 10000 --seconds 10 --window 20"
    [closed-fanin-q1]="closed --pubs 10 --subs 1 --qos 1 --messages 100000 --window 100"
    [closed-1to1-q1]="closed --pubs 1 --subs 1 --qos 1 --messages 100000 --window 100"
    [closed-fanout-q1]="closed --pubs 1 --subs 10 --qos 1 --messages 100000 --window 100"
)
ORDER="paced-fanin-q1,paced-fanin-q0,paced-1to1-q2,closed-fanin-q1,closed-1to1-q1,closed-fanout-q1"

build() {
    cc -O2 -Wall -Wextra -Werror -std=gnu11 -o "$LOADGEN" "$here/mqtt-loadgen.c" -lmosquitto -lpthread
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# one KIND SLUICE_BIN GENERATOR_ARGS...: a fresh broker, one generator run, the broker stopped (by its pid).
one() {
    local kind="$1" sluice="$2"
    shift 2
    local dir port pid status=0
    dir="$(mktemp -d /tmp/loadgen-"$kind"-XXXXXX)"
    port="$(free_port)"
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_queued_messages 0"
        if [ -n "${BROKER_EXTRA:-}" ]; then echo "$BROKER_EXTRA"; fi
        if [ "$kind" = mosquitto ]; then
            echo "user root"
            echo "log_dest stderr"
            if [ -n "${MOSQUITTO_EXTRA:-}" ]; then echo "$MOSQUITTO_EXTRA"; fi
        else
            echo "persistence_location $dir/"
        fi
    } > "$dir/broker.conf"
    local nice=(nice -n "${LOADGEN_NICE:-0}")
    if [ "$kind" = mosquitto ]; then
        "${nice[@]}" "$MOSQUITTO" -c "$dir/broker.conf" > "$dir/broker.log" 2>&1 &
    else
        "${nice[@]}" "$sluice" run -c "$dir/broker.conf" --log-level warning > "$dir/broker.log" 2>&1 &
    fi
    pid=$!
    for _ in $(seq 300); do
        if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null || ! kill -0 "$pid" 2> /dev/null; then break; fi
        sleep 0.05
    done
    if kill -0 "$pid" 2> /dev/null; then
        "${nice[@]}" "$LOADGEN" "$@" --port "$port" --pid "$pid" || status=$?
    else
        echo "$kind did not start" >&2
        status=1
    fi
    kill -TERM "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    [ "$status" = 0 ] || tail -5 "$dir/broker.log" >&2
    rm -rf "$dir"
    return "$status"
}

table() {
    local sluice="$1" rounds="${2:-3}" rows="${3:-$ORDER}"
    local log="${LOADGEN_LOG:-/tmp/loadgen-$(date -u +%Y%m%dT%H%M%S).log}"
    echo "log: $log"
    local row round kind order out
    for row in ${rows//,/ }; do
        [ -n "${ROWS[$row]:-}" ] || { echo "unknown row $row" >&2; return 2; }
        for round in $(seq "$rounds"); do
            order="mosquitto sluice"
            [ $((round % 2)) = 0 ] && order="sluice mosquitto"
            for kind in $order; do
                # shellcheck disable=SC2086 # ROWS hold word lists
                out="$(one "$kind" "$sluice" ${ROWS[$row]} ${LOADGEN_ARGS:-} 2>&1)" || echo "$row $kind round $round FAILED" >&2
                echo "ROW $row $round $kind load=$(cut -d' ' -f1 /proc/loadavg) at=$(date -u +%H:%M:%S)" \
                    "$(grep '^RESULT' <<< "$out" | cut -d' ' -f2-)" | tee -a "$log"
            done
        done
    done
    summary "$log"
}

summary() {
    python3 - "$1" << 'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 5 or parts[0] != "ROW":
        continue
    kv = dict(p.split("=", 1) for p in parts[4:] if "=" in p)
    runs.setdefault(parts[1], {}).setdefault(parts[3], []).append(kv)
keys = [("cpu_us_per_msg", "CPU/msg µs"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("rate", "msg/s"),
        ("gen_core", "gen core"), ("load", "load")]
for row, by in runs.items():
    print(f"{row}:")
    med = {}
    for kind in ("mosquitto", "sluice"):
        rs = by.get(kind, [])
        cells = []
        for k, label in keys:
            vals = [float(r[k]) for r in rs if k in r and float(r.get(k, -1)) >= 0]
            if vals:
                med[(kind, k)] = statistics.median(vals)
                cells.append(f"{label} {med[(kind, k)]:.4g} [{min(vals):.4g}–{max(vals):.4g}]")
        bad = sum(1 for r in rs if r.get("missing", "0") != "0" or r.get("lost", "0") != "0")
        print(f"  {kind:9} n={len(rs)} " + "; ".join(cells) + (f"; {bad} run(s) with loss" if bad else ""))
    ratios = [f"{label} {med[('sluice', k)] / med[('mosquitto', k)]:.2f}×" for k, label in keys[:4]
              if med.get(("mosquitto", k)) and ("sluice", k) in med]
    print("  sluice ÷ mosquitto: " + ", ".join(ratios))
EOF
}

case "${1:-}" in
build) build ;;
one) shift; one "$@" ;;
table) shift; table "$@" ;;
summary) shift; summary "$@" ;;
*) sed -n '2,18p' "$0"; exit 2 ;;
esac
