#!/usr/bin/env bash
# Backlog figures for the bridge: durable enqueue rate, start-up time with the backlog, drain rate.
# Usage: N=1000000 SLUICE=.build-release/release/sluice bash scripts/bench-backlog.sh
# (loopback only; starts its own sluice and a central mosquitto, removes its temp dir at the end)
set -u
N=${N:-1000000}; PER=20000; P=$((N / PER))  # mosquitto_pub -l sends only part of much longer inputs
D=$(mktemp -d /tmp/m1.XXXX); SL=${SLUICE:-.build-release/release/sluice}
LP=18901; CP=18902
cat > $D/gw.conf <<C
listener $LP 127.0.0.1
allow_anonymous true
persistence_location $D/data/
connection central
address 127.0.0.1:$CP
restart_timeout 1 1
queue_max_messages 0
queue_max_bytes 0
bridge_max_inflight 1000
topic bench/# out 1
C
cat > $D/central.conf <<C
listener $CP 127.0.0.1
allow_anonymous true
max_queued_messages 0
user root
persistence true
persistence_location $D/central/
C
mkdir -p $D/central
mosquitto -c $D/central.conf -d 2>/dev/null; sleep 0.5
mosquitto_sub -p $CP -t 'bench/#' -q 1 -c -i counter -E
pkill -TERM -f "mosquitto -c $D/central.conf"; sleep 1
$SL run -c $D/gw.conf > $D/gw.log 2>&1 & GW=$!
sleep 1
t0=$(date +%s.%N)
for i in $(seq 1 $P); do (seq 1 $PER | sed "s/^/$i-/" | mosquitto_pub -p $LP -t bench/$i -l -q 1) & done
wait $(jobs -p | grep -v $GW) 2>/dev/null
# wait for the publishers only
while pgrep -f "mosquitto_pub -p $LP" >/dev/null; do sleep 0.2; done
t1=$(date +%s.%N)
echo "enqueue: $N msgs in $(echo "$t1 - $t0" | bc) s = $(echo "$N / ($t1 - $t0)" | bc) msg/s ($P mosquitto_pub -l -q 1 of $PER lines, 20 in flight each)"
$SL queue stats -c $D/gw.conf central
kill -TERM $GW; wait $GW
t2=$(date +%s.%N)
$SL run -c $D/gw.conf > $D/gw2.log 2>&1 & GW=$!
while ! grep -q listening $D/gw2.log; do sleep 0.01; done
t3=$(date +%s.%N)
echo "start-up with the backlog: $(echo "$t3 - $t2" | bc) s to listening"
mosquitto -c $D/central.conf -d 2>/dev/null
sleep 0.3
# a persistent subscriber counts at the central
t4=$(date +%s.%N)
timeout 600 mosquitto_sub -p $CP -t 'bench/#' -q 1 -c -i counter -C $N > /dev/null
t5=$(date +%s.%N)
echo "drain: $N msgs in $(echo "$t5 - $t4" | bc) s = $(echo "$N / ($t5 - $t4)" | bc) msg/s (includes reconnect backoff <= 1 s)"
$SL queue stats -c $D/gw.conf central
kill -TERM $GW; pkill -f "mosquitto -c $D/central.conf"; wait $GW 2>/dev/null
rm -rf $D
