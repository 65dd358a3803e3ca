#!/bin/bash
# Usage: scripts/loadgen-callgrind.sh BROKER [QOS] [OUTDIR]
#   BROKER: a sluice binary (release build, debug info stripped: `strip --strip-debug` a copy, or valgrind
#   cannot read it) or the word `mosquitto`.
# Callgrind instructions (all threads) per message when messages arrive in batches, as in sluice-bench's paced
# rows (about 8 messages per broker wake-up there; scripts/publish-callgrind.sh has one per wake-up): the C
# generator (scripts/mqtt-loadgen.c, `scripts/loadgen.sh build`), 10 publishers -> 1 subscriber at QOS
# (default 0), 64 B on loadgen/PID/STAMP, 500 msg/s in all fired every 40 ms (20 per wake-up) for 6 s. A
# second run sends 2 msg/s for the same 6 s, so start-up, connections, keepalives and shutdown cancel:
# Ir/msg = (Ir of the load run - Ir of the idle run) / (messages delivered in the load run - in the idle run).
# The profiles stay in OUTDIR for `callgrind_annotate --inclusive=yes OUTDIR/load.cg`.
# EXTRA_LINES adds config lines (newline-separated), e.g. a bridge to a central that is down, so every QoS 1
# message takes the durable path: EXTRA_LINES=$'connection c\naddress 127.0.0.1:9\ntopic loadgen/# out 1'
set -u
BROKER=$1; QOS=${2:-0}; OUT=${3:-$(mktemp -d "${TMPDIR:-/tmp}"/loadgen-callgrind.XXXX)}
LOADGEN="${LOADGEN:-/tmp/mqtt-loadgen}"
[ -x "$LOADGEN" ] || bash "$(dirname "$0")/loadgen.sh" build || exit 1
mkdir -p "$OUT"
. "$(dirname "$0")/callgrind-broker.sh"

run() {  # run NAME RATE: prints the messages delivered
    local name=$1 rate=$2
    start_broker "$name" "max_queued_messages 0${EXTRA_LINES:+
$EXTRA_LINES}" || return 1
    "$LOADGEN" paced --pubs 10 --subs 1 --qos "$QOS" --rate "$rate" --seconds 6 --tick-us 40000 \
        --port "$PORT" --pid $VPID > "$OUT/$name.gen" 2>&1
    kill $VPID
    wait $VPID 2>/dev/null
    grep -o 'delivered=[0-9]*' "$OUT/$name.gen" | head -n 1 | cut -d= -f2
}

load=$(run load 500) || exit 1
idle=$(run idle 2) || exit 1
if [ -z "$load" ] || [ -z "$idle" ] || [ "$load" -le "$idle" ]; then
    echo "no messages counted (delivered: load '$load', idle '$idle'); see $OUT/*.gen" >&2
    exit 1
fi
load_ir=$(total "$OUT/load.cg"); idle_ir=$(total "$OUT/idle.cg")
echo "load: $load_ir Ir, $load messages; idle: $idle_ir Ir, $idle messages"
echo "Ir/msg: $(( (load_ir - idle_ir) / (load - idle) ))  (profiles in $OUT)"
