#!/usr/bin/env bash
# Installs what building and testing Sluice needs on Debian 12 (run as root or with sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    liblmdb-dev lmdb-utils libssl-dev pkg-config \
    mosquitto mosquitto-clients \
    iproute2 nftables \
    python3 python3-pip >/dev/null
python3 -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/../Tests/IntegrationTests/requirements.txt"
