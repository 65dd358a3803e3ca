#!/usr/bin/env bash
# The whole test suite: unit tests (swift test), then integration tests against the built
# `sluice` binary with real clients (mosquitto_pub/sub, paho-mqtt) and a real Mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build
python3 -m pytest Tests/IntegrationTests -q -p no:cacheprovider
