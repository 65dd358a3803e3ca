#!/usr/bin/env bash
# The whole test suite: unit tests (swift test), then each libFuzzer target for a bounded time
# (scripts/fuzz.sh; SLUICE_SKIP_FUZZ=1 skips it, SLUICE_FUZZ_SECONDS sets the time per target,
# default 60; the targets run side by side, and the sanitizer build from clean takes about 3.5
# minutes here), then integration tests against the built `sluice` binary with real clients
# (mosquitto_pub/sub, paho-mqtt) and a real Mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every module a target imports from this package must be a declared dependency (keeps the layering honest).
# Full Foundation links ICU (about 45 MB of the binary): the shipped targets use FoundationEssentials.
if grep -rln '^import Foundation$' Sources --include=*.swift | grep -v '^Sources/SluiceBench/'; then
    echo "the files above import full Foundation: use FoundationEssentials (see BENCHMARKS.md, binary size)" >&2
    exit 1
fi
# Style: swift format lint (about 3 s).
git ls-files 'Sources/*.swift' 'Tests/*.swift' | xargs swift format lint --strict
# Warnings are errors (Package.swift, strictWarnings), deprecations excepted.
swift build --build-tests --explicit-target-dependency-import-check error
swift test --skip-build
if [ "${SLUICE_SKIP_FUZZ:-}" = 1 ]; then
    echo "fuzzing skipped: SLUICE_SKIP_FUZZ=1"
else
    bash scripts/fuzz.sh all "${SLUICE_FUZZ_SECONDS:-60}"
fi
python3 -m pytest Tests/IntegrationTests -q -p no:cacheprovider
