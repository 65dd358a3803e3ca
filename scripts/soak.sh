#!/usr/bin/env bash
# The long soak (outside CI): mixed load against the built gateway for SOAK_SECONDS (default
# 600), RSS sampled every second into SOAK_CSV. CI runs the same test for 60 s.
# Usage: scripts/soak.sh [SECONDS]   (build first: swift build)
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${1:-${SOAK_SECONDS:-600}}"
export SOAK_CSV="${SOAK_CSV:-$PWD/soak-rss.csv}"
python3 -m pytest Tests/IntegrationTests/test_soak.py -q -s -p no:cacheprovider
echo "RSS samples: $SOAK_CSV"
