#!/usr/bin/env bash
# Idle RSS (issue 17's figure): VmRSS of a fresh `sluice run` 2 s after start, on a free loopback port,
# persistence in a temp dir, `log_type error`.
#   scripts/idle-rss.sh BINARY [--no-madvise] [RUNS]
# --no-madvise preloads a madvise(2) that does nothing, so WorkingSet.swift releases nothing: the figure
# the "≤ 9 MB with no start-up madvise trick" target means. Prints one line per run.
set -euo pipefail
bin=$1; mode=${2:-}; runs=${3:-1}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
preload=()
if [ "$mode" = --no-madvise ]; then
    printf '#include <sys/mman.h>\nint madvise(void *a, size_t l, int d) { (void)a; (void)l; (void)d; return 0; }\n' > "$work/noop.c"
    cc -shared -fPIC -o "$work/noop_madvise.so" "$work/noop.c"
    preload=(env "LD_PRELOAD=$work/noop_madvise.so")
fi
for _ in $(seq "$runs"); do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rm -rf "$work/data"; mkdir "$work/data"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nlog_type error\n' \
        "$port" "$work/data" > "$work/idle.conf"
    "${preload[@]}" "$bin" run -c "$work/idle.conf" > /dev/null 2>&1 &
    pid=$!
    sleep 2
    grep -E 'VmRSS|RssAnon|RssFile' "/proc/$pid/status" | tr -s ' \n' ' '; echo
    kill "$pid"; wait "$pid" 2> /dev/null || true
done
