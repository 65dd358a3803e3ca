#!/usr/bin/env bash
# What the commit-before-PUBACK guarantee for persistent sessions costs: 4 × mosquitto_pub -l
# (QoS 1, 20 in flight each) send 80,000 messages to a topic an offline persistent subscriber
# holds, against Sluice with persistence true (PUBACK after the LMDB commit), Mosquitto with
# persistence true (in memory until its autosave), and Sluice with persistence false. Prints the
# time to the last PUBACK and how many the subscriber then receives. Loopback only; bounded.
#   ROUNDS=3 SLUICE=.build-release/release/sluice bash scripts/bench-persistent-session.sh
set -euo pipefail
SLUICE=${SLUICE:-.build-release/release/sluice}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 20000 > "$work/lines"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() {  # kind persistence
    local kind=$1 persistence=$2 port dir pid start end got pubs=""
    port=$(free_port); dir=$(mktemp -d "$work/b.XXXX")
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence %s\npersistence_location %s/\nmax_queued_messages 0\n' \
        "$port" "$persistence" "$dir" > "$dir/conf"
    if [ "$kind" = sluice ]; then "$SLUICE" run -c "$dir/conf" > "$dir/log" 2>&1 & else mosquitto -c "$dir/conf" > "$dir/log" 2>&1 & fi
    pid=$!
    sleep 1
    mosquitto_sub -p "$port" -c -i offline-sub -q 1 -t t -W 1 > /dev/null 2>&1 || true
    start=$(date +%s.%N)
    for _ in 1 2 3 4; do timeout 120 mosquitto_pub -p "$port" -q 1 -t t -l < "$work/lines" & pubs="$pubs $!"; done
    wait $pubs
    end=$(date +%s.%N)
    got=$(timeout 60 mosquitto_sub -p "$port" -c -i offline-sub -q 1 -t t -W 3 2> /dev/null | wc -l || true)
    kill "$pid"; wait "$pid" 2> /dev/null || true
    printf '%-9s persistence %-5s  80000 PUBACKed in %6.2f s = %6.0f msg/s; subscriber got %s\n' \
        "$kind" "$persistence" "$(echo "$end - $start" | bc)" "$(echo "80000 / ($end - $start)" | bc)" "$got"
}

for _ in $(seq "$ROUNDS"); do
    run sluice true
    run mosquitto true
    run sluice false
done
