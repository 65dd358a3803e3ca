#!/usr/bin/env bash
# Runs a libFuzzer target of Fuzz/ for a bounded time.
#
#   scripts/fuzz.sh TARGET|all [SECONDS]     TARGET: FuzzMQTTDecoder or FuzzConfig; SECONDS: default 60
#
# Builds the fuzz package with `swift build --sanitize fuzzer` (scratch path .build-fuzz), runs each
# target on a copy of its seed corpus (fixtures/fuzz/mqtt or fixtures/fuzz/config, plus the saved
# crash inputs) in a temporary folder, and saves every crash/timeout/oom/leak input into
# fixtures/fuzz/crashes/TARGET/. Exits 1 if any was found; commit those files: the Swift Testing
# suites "Fuzz corpus" replay them. `all` runs the targets at the same time (one core each).
# Exits 0 with "skipped: ..." when the toolchain cannot build fuzz targets. Extra libFuzzer flags can
# be passed in FUZZ_FLAGS (e.g. FUZZ_FLAGS="-jobs=2").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() { echo "usage: $0 FuzzMQTTDecoder|FuzzConfig|all [SECONDS]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
case "$1" in
    FuzzMQTTDecoder | FuzzConfig) targets=("$1") ;;
    all) targets=(FuzzMQTTDecoder FuzzConfig) ;;
    *) usage ;;
esac
seconds=${2:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] || usage

seeds_of() { case "$1" in FuzzMQTTDecoder) echo fixtures/fuzz/mqtt ;; FuzzConfig) echo fixtures/fuzz/config ;; esac; }

# Fuzzing needs libFuzzer's runtime in the toolchain (Linux toolchains from swift.org ship it; Xcode's
# does not): look for it before spending minutes on a build that cannot link.
if ! swift_bin=$(command -v swift); then
    echo "skipped: no swift in PATH"
    exit 0
fi
toolchain=$(dirname "$(dirname "$(readlink -f "$swift_bin")")")
if ! compgen -G "$toolchain/lib/clang/*/lib/*/libclang_rt.fuzzer*" >/dev/null \
    && ! compgen -G "$toolchain/lib/swift/clang/lib/*/libclang_rt.fuzzer*" >/dev/null; then
    echo "skipped: this toolchain ($toolchain) has no libFuzzer runtime (libclang_rt.fuzzer), so" \
        "'swift build --sanitize fuzzer' cannot link"
    exit 0
fi
for target in "${targets[@]}"; do
    log=$(mktemp)
    if ! swift build --package-path Fuzz --scratch-path "$root/.build-fuzz" --sanitize fuzzer \
        --product "$target" >"$log" 2>&1; then
        unsupported="fuzzer.*(not supported|unsupported)|unsupported.*sanitiz|unknown.*sanitiz|libclang_rt\.fuzzer"
        if grep -qiE "$unsupported" "$log"; then
            echo "skipped: this toolchain cannot build with --sanitize fuzzer:"
            grep -iE "fuzzer|sanitiz" "$log" | head -5
            rm -f "$log"
            exit 0
        fi
        cat "$log"
        rm -f "$log"
        echo "fuzz: building $target failed" >&2
        exit 1
    fi
    rm -f "$log"
done
bin_dir=$(swift build --package-path Fuzz --scratch-path "$root/.build-fuzz" --sanitize fuzzer --show-bin-path)

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

run_one() {
    local target=$1 dir="$work/$1"
    mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/cwd" "$root/fixtures/fuzz/crashes/$target"
    cp "$root/$(seeds_of "$target")"/* "$dir/corpus/"
    cp "$root/fixtures/fuzz/crashes/$target"/* "$dir/corpus/" 2>/dev/null || true
    local seeds
    seeds=$(ls "$dir/corpus" | wc -l)
    echo "fuzz: $target for ${seconds}s from $seeds seeds (log: $dir/log)"
    # Without SWIFT_BACKTRACE=enable=no a trap leaves no crash file. The empty cwd keeps relative
    # paths in fuzzed configs (include_dir, password_file…) from reaching the repository.
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a runaway allocation.
    # shellcheck disable=SC2086
    (cd "$dir/cwd" && SWIFT_BACKTRACE=enable=no "$bin_dir/$target" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" ${FUZZ_FLAGS:-} "$dir/corpus" >"$dir/log" 2>&1) || true
    grep -E "^#[0-9]+.*(DONE|pulse|NEW)" "$dir/log" | tail -1 | sed "s/^/fuzz: $target: /" || true
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$dir/log" | sed "s/^/fuzz: $target: /" || true
    local found=0 artifact
    for artifact in "$dir/artifacts"/*; do
        [ -e "$artifact" ] || continue
        found=1
        cp "$artifact" "$root/fixtures/fuzz/crashes/$target/"
        echo "fuzz: $target: FOUND $(basename "$artifact") -> fixtures/fuzz/crashes/$target/"
    done
    if [ $found = 1 ]; then
        grep -B2 -A30 -E "ERROR: libFuzzer|Fatal error|SUMMARY" "$dir/log" | head -60
        return 1
    fi
    if ! grep -q "Done [0-9]* runs" "$dir/log"; then
        tail -20 "$dir/log"
        echo "fuzz: $target did not finish normally" >&2
        return 1
    fi
}

pids=()
for target in "${targets[@]}"; do
    run_one "$target" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
if [ $status != 0 ]; then
    echo "fuzz: failures found; inputs saved under fixtures/fuzz/crashes/ (commit them, fix, re-run)" >&2
fi
exit $status
