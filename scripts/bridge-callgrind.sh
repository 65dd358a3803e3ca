#!/bin/bash
# Usage: scripts/bridge-callgrind.sh SLUICE N OUT
# Callgrind instructions (all threads) of a Sluice edge forwarding N QoS 1 messages of 64 bytes over its bridge to
# a central mosquitto (BENCHMARKS.md, "Live bridge records from memory"). Per message: run it with two N and divide
# the difference of the totals by the difference of the Ns, so start-up and shutdown cancel.
set -u
BIN=$1; N=$2; OUT=$3
D=$(mktemp -d ${TMPDIR:-/tmp}/bridge-callgrind.XXXX)
PC=$((20000 + RANDOM % 20000)); PE=$((PC + 1))
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' $PC > $D/central.conf
cat > $D/edge.conf <<C
listener $PE 127.0.0.1
allow_anonymous true
persistence true
persistence_location $D/store
connection central
address 127.0.0.1:$PC
topic bench/# out 1
C
mkdir -p $D/store
mosquitto -c $D/central.conf > $D/central.log 2>&1 & CPID=$!
sleep 0.5
valgrind --tool=callgrind --callgrind-out-file=$OUT $BIN run -c $D/edge.conf > $D/edge.log 2>&1 & EPID=$!
for i in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/$PE) 2>/dev/null && break; sleep 0.2; done
sleep 3  # bridge connects
timeout 300 mosquitto_sub -p $PC -q 1 -t 'bench/#' -C $N > $D/got.txt & SPID=$!
sleep 1
seq 1 $N | awk '{printf "%064d\n", $1}' | timeout 300 mosquitto_pub -p $PE -q 1 -t bench/x -l
wait $SPID
echo "received $(wc -l < $D/got.txt) of $N"
kill -TERM $EPID; wait $EPID
kill $CPID; wait $CPID 2>/dev/null
callgrind_annotate $OUT 2>/dev/null | grep -m1 "PROGRAM TOTALS"
rm -rf $D
