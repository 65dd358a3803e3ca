# Sourced by scripts/publish-callgrind.sh and scripts/loadgen-callgrind.sh, which set BROKER (a stripped sluice
# binary or `mosquitto`) and OUT (the profiles' directory).
#   start_broker NAME LINES: starts BROKER under callgrind (profile OUT/NAME.cg, log OUT/NAME.log) on a free
#     loopback port with anonymous access and LINES (newline-separated config lines) added; sets PORT and VPID.
#   total FILE.cg: the profile's instruction count.

total() { callgrind_annotate "$1" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}'; }

start_broker() {
    local name=$1 lines=$2 conf=$OUT/$1.conf attempt
    # A free port can be taken by another process before the broker binds it: then the broker exits and
    # this tries another port (connecting to someone else's listener would measure nothing).
    for attempt in 1 2 3; do
        PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        printf 'listener %s 127.0.0.1\nallow_anonymous true\n%s\n' "$PORT" "$lines" > "$conf"
        if [ "$BROKER" = mosquitto ]; then
            echo 'user root' >> "$conf"  # stays root so it can write the profile
            valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.cg" mosquitto -c "$conf" > "$OUT/$name.log" 2>&1 &
        else
            echo "persistence_location $OUT/" >> "$conf"
            valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.cg" "$BROKER" run -c "$conf" > "$OUT/$name.log" 2>&1 &
        fi
        VPID=$!
        for _ in $(seq 1 300); do
            kill -0 $VPID 2>/dev/null || break
            (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
            sleep 0.2
        done
        sleep 1
        kill -0 $VPID 2>/dev/null && return 0
        wait $VPID 2>/dev/null
        echo "$name: broker exited at start (attempt $attempt): $(grep -v '^==' "$OUT/$name.log" | tail -n 1)" >&2
    done
    return 1
}
