#!/usr/bin/env bash
# Builds the power-cut VM's kernel and base initramfs from Debian packages installed on this host
# (linux-image-amd64 for the kernel and its modules, busybox-static for the userland), cached
# outside the repository under a key made of this script, the guest's init and the kernel version.
# Prints the cache folder (holding vmlinuz and base.cpio.gz) on stdout; timing on stderr.
# The gateway binary and its shared libraries are packed per run by powercut.py, not here.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE_ROOT="${SLUICE_POWERCUT_CACHE:-/var/cache/sluice-powercut}"
if ! mkdir -p "$CACHE_ROOT" 2>/dev/null || [ ! -w "$CACHE_ROOT" ]; then
    CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/sluice-powercut"  # not root: a per-user cache
fi
start=$(date +%s.%N)

kver=""
for k in /boot/vmlinuz-*; do
    v="${k#/boot/vmlinuz-}"
    [ -f "/lib/modules/$v/modules.dep" ] && kver="$v"
done
if [ -z "$kver" ]; then
    echo "build-image: no kernel with modules in /boot (install linux-image-amd64)" >&2
    exit 2
fi
BUSYBOX=/bin/busybox
busybox_banner=$("$BUSYBOX" --help 2>&1 || true)
busybox_banner=${busybox_banner%%$'\n'*}
if [[ "$busybox_banner" != BusyBox* ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "build-image: $BUSYBOX is not a static busybox (install busybox-static)" >&2
    exit 2
fi

key=$( { cat "$HERE/build-image.sh" "$HERE/guest-init.sh"; echo "$kver"; echo "$busybox_banner"; } \
       | sha256sum | cut -c1-16)
out="$CACHE_ROOT/$key"
if [ -f "$out/base.cpio.gz" ] && [ -f "$out/vmlinuz" ]; then
    echo "build-image: cached $out (kernel $kver)" >&2
    echo "$out"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
stage=$(mktemp -d "$CACHE_ROOT/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,etc,store,tmp,lib/modules,opt/sluice/lib}
cp "$BUSYBOX" "$root/bin/busybox"
cp "$HERE/guest-init.sh" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"

# The modules the guest needs, with their dependencies in load order (from modules.dep).
moddir="/lib/modules/$kver"
wanted="virtio_pci virtio_blk virtio_net crc32c_generic crc32c-intel ext4"
: > "$root/etc/powercut-modules"
declare -A seen=()
add_module() {
    local path deps d
    path=$(grep -E "/$1\.ko:" "$moddir/modules.dep" | head -1 | cut -d: -f1) || true
    [ -n "$path" ] || { echo "build-image: module $1 not found in $moddir" >&2; exit 2; }
    [ -n "${seen[$path]:-}" ] && return 0
    seen[$path]=1
    deps=$(grep -E "^$path:" "$moddir/modules.dep" | cut -d: -f2)
    # modules.dep lists dependencies nearest first: load them in reverse.
    for d in $(echo $deps | tr ' ' '\n' | tac); do add_module "$(basename "$d" .ko)"; done
    mkdir -p "$root/lib/modules/$(dirname "$path")"
    cp "$moddir/$path" "$root/lib/modules/$path"
    echo "$path" >> "$root/etc/powercut-modules"
}
for m in $wanted; do add_module "$m"; done

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$stage/base.cpio.gz"
cp "/boot/vmlinuz-$kver" "$stage/vmlinuz"
rm -rf "$out"
mkdir -p "$out"
mv "$stage/base.cpio.gz" "$stage/vmlinuz" "$out/"
echo "$kver" > "$out/kernel-version"
end=$(date +%s.%N)
echo "build-image: built $out (kernel $kver, $(du -sh "$out/base.cpio.gz" | cut -f1) initramfs) in $(echo "$end - $start" | bc 2>/dev/null || echo '?') s" >&2
echo "$out"
