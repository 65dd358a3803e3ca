#!/usr/bin/env bash
# Installs what building and testing Sluice needs on Debian 12 (run as root or with sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    liblmdb-dev lmdb-utils libssl-dev pkg-config libstdc++-12-dev \
    mosquitto mosquitto-clients \
    iproute2 nftables \
    prometheus man-db groff-base \
    python3 python3-pip >/dev/null
# The status page test (Tests/IntegrationTests/test_status.py) renders / in headless Chromium.
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
python3 -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/../Tests/IntegrationTests/requirements.txt"
# The power-cut proof (scripts/powercut.sh, Tests/IntegrationTests/test_powercut.py): a VM with a
# Debian kernel, a busybox initramfs and an nbdkit-served disk that keeps only flushed writes.
# x86_64 only; SLUICE_SKIP_POWERCUT_DEPS=1 leaves it out (the test then skips and says why).
if [ "$(uname -m)" = "x86_64" ] && [ "${SLUICE_SKIP_POWERCUT_DEPS:-0}" != "1" ]; then
    apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 nbdkit socat busybox-static linux-image-amd64 cpio e2fsprogs >/dev/null
fi
