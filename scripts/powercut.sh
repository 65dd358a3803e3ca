#!/usr/bin/env bash
# Power-cut proof: runs the gateway in a VM on a disk that keeps only what the guest flushed, cuts
# the power N times at random moments while a QoS 1 publisher records every PUBACK, then checks
# that every acknowledged message reached the central broker, in order (RELIABILITY.md).
#
#   scripts/powercut.sh N [--seed S] [--keep] [--mutate nosync|nobarrier] [--sluice PATH]
#
# Needs qemu-system-x86, nbdkit, socat, busybox-static, linux-image-amd64 (scripts/install-deps.sh)
# and a built gateway (.build/debug/sluice by default). Uses KVM when a Debian kernel boots under
# it, TCG otherwise (SLUICE_POWERCUT_ACCEL=kvm|tcg forces one). The kernel and base initramfs are
# cached in $SLUICE_POWERCUT_CACHE (default /var/cache/sluice-powercut).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/powercut/powercut.py "$@"
