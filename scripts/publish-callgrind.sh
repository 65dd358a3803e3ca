#!/bin/bash
# Usage: scripts/publish-callgrind.sh BROKER QOS PER [OUTDIR]
#   BROKER: a sluice binary (release build, debug info stripped: `strip --strip-debug` a copy, or valgrind
#   cannot read it) or the word `mosquitto`.
# Callgrind instructions (all threads) per published message on the fan-in path (BENCHMARKS.md, "Publish path
# in instructions"): paho-mqtt clients (MQTT 3.1.1), 10 publishers x PER messages of 64 B on cg/0..cg/9 -> 1
# subscriber on cg/# at QOS, paced at 100 msg/s in all. A second run keeps the same clients connected for the
# same time without publishing; Ir/msg = (Ir of the load run - Ir of the idle run) / (10 x PER), so start-up,
# keepalives and shutdown cancel. Prints both totals and Ir/msg; the profiles stay in OUTDIR for
# `callgrind_annotate --inclusive=yes OUTDIR/load.cg`.
set -u
BROKER=$1; QOS=$2; PER=$3; OUT=${4:-$(mktemp -d ${TMPDIR:-/tmp}/publish-callgrind.XXXX)}
PUBS=10; RATE=100
mkdir -p "$OUT"
. "$(dirname "$0")/callgrind-broker.sh"

run() {  # run NAME [--idle]
    local name=$1 idle=${2:-} port vpid
    start_broker "$name" 'max_queued_messages 100000' || return 1
    port=$PORT vpid=$VPID
    python3 - "$port" "$PUBS" "$PER" "$QOS" "$RATE" $idle <<'PY'
import sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, pubs, per, qos, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
idle = "--idle" in sys.argv
total = pubs * per
got = 0
lock = threading.Lock()
done = threading.Event()
def on_msg(c, u, m):
    global got
    with lock:
        got += 1
        if got >= total: done.set()
sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cg-sub", protocol=mqtt.MQTTv311)
sub.on_message = on_msg
sub.connect("127.0.0.1", port)
sub.loop_start()
sub.subscribe("cg/#", qos=qos)
clients = []
for i in range(pubs):
    p = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cg-pub{i}", protocol=mqtt.MQTTv311)
    p.max_inflight_messages_set(100)
    p.connect("127.0.0.1", port)
    p.loop_start()
    clients.append(p)
time.sleep(3)
payload = b"x" * 64
start = time.time()
sent = 0
if idle:
    time.sleep(total / rate)
    done.set()
else:
    for k in range(per):
        for i, p in enumerate(clients):
            p.publish(f"cg/{i}", payload, qos=qos)
            sent += 1
            delay = start + sent / rate - time.time()
            if delay > 0: time.sleep(delay)
ok = done.wait(120)
time.sleep(0.5)
print(f"sent {sent} received {got} complete={ok} seconds={time.time() - start:.1f}")
for p in clients: p.disconnect(); p.loop_stop()
sub.disconnect(); sub.loop_stop()
sys.exit(0 if ok else 1)
PY
    local rc=$?
    kill -0 $vpid 2>/dev/null || { echo "$name: broker gone before the end of the run" >&2; rc=1; }
    kill -INT $vpid; wait $vpid 2>/dev/null
    return $rc
}

run load || { echo "load run failed: no Ir/msg" >&2; exit 1; }
run idle --idle || { echo "idle run failed: no Ir/msg" >&2; exit 1; }
L=$(total "$OUT/load.cg"); I=$(total "$OUT/idle.cg"); N=$((PUBS * PER))
echo "broker=$BROKER qos=$QOS messages=$N load_Ir=$L idle_Ir=$I Ir_per_msg=$(( (L - I) / N )) profiles=$OUT"
