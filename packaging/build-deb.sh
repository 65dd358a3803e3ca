#!/usr/bin/env bash
# build-deb.sh: build the Sluice Debian package, packaging/out/sluice_VERSION_ARCH.deb.
#
#   packaging/build-deb.sh                      # release build (6-10 min), strip, stage, pack
#   SLUICE_SKIP_BUILD=1 packaging/build-deb.sh  # reuse the binary of an earlier release build
#
# Environment (all optional):
#   SLUICE_BUILD_DIR    SwiftPM scratch path of the release build (default: .build-release)
#   SLUICE_SKIP_BUILD=1 do not run swift build; use $SLUICE_BUILD_DIR/release/sluice
#   SLUICE_BINARY=PATH  package this sluice binary instead (implies SLUICE_SKIP_BUILD=1)
#   VERSION             package version (default: from `sluice version`, e.g. 0.1.0)
#   DEB_REVISION        Debian revision, giving VERSION-DEB_REVISION (default: none, native)
#   SLUICE_MAINTAINER   Maintainer field (default: Sluice Maintainers <sluice@example.org>)
#   SLUICE_OUT_DIR      output folder (default: packaging/out)
#
# The binary is built with the static Swift stdlib, no rpath and full RELRO
# (swift build -c release --static-swift-stdlib --disable-local-rpath -Xlinker -z -Xlinker now
# -Xlinker --no-export-dynamic: nothing loads symbols from the executable, and its 23,000 exported
# Swift and BoringSSL symbols cost 2.5 MB of dynamic symbol table), then stripped. Size and
# resident code (issue 17; BENCHMARKS.md has the figures): linked by the toolchain's lld with
# --icf=all (identical functions folded) and -z pack-relative-relocs (DT_RELR: the 1.6 MB of
# relative relocations become a few KB; needs glibc >= 2.36, which dpkg-shlibdeps then writes
# into Depends); Swift code in one section per function (-Xfrontend -function-sections), so
# --gc-sections drops unused functions and --symbol-ordering-file=packaging/sluice.order
# (scripts/gen-link-order.py) packs the code a running gateway executes into few pages;
# packaging/unnamed-code.ld puts the symbol-less helpers (closure destroyers) next to it.
# Dynamic exclusivity checks are off (-enforce-exclusivity=unchecked, for SwiftNIO and every other
# dependency too): Swift 5 and later check overlapping accesses to class properties, globals and
# escaping captures at run time in release builds, a swift_beginAccess call per access, and on the
# publish path they were the largest single cost (issue 17; BENCHMARKS.md, "Publish path in
# instructions, session 7"). The trade: an exclusivity violation the compiler cannot see becomes
# undefined behaviour in the shipped binary instead of a trap. Static checks stay, and debug builds
# and the tests (swift build / swift test) keep the run-time checks.
# libstdc++ is linked statically (only the Swift runtime uses it: ~70 KB of it instead of
# mapping and relocating the 2 MB shared library, ~1 MB of idle RSS; GCC runtime exception).
# Depends comes from dpkg-shlibdeps (+ libssl3, dlopen'd, and adduser for the maintainer scripts).
# The shipped /etc/sluice/gateway.conf is validated with the built binary's `sluice check`.
# Needs: swift, dpkg-dev (dpkg-shlibdeps), binutils (strip), gzip. Run as any user
# (dpkg-deb --root-owner-group makes every file root:root). The last line printed is the
# path of the .deb.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

build_dir="${SLUICE_BUILD_DIR:-.build-release}"
out_dir="${SLUICE_OUT_DIR:-$here/out}"
maintainer="${SLUICE_MAINTAINER:-Sluice Maintainers <sluice@example.org>}"
arch="$(dpkg --print-architecture)"

log() { printf 'build-deb: %s\n' "$*" >&2; }

if [ -n "${SLUICE_BINARY:-}" ]; then
    binary="$SLUICE_BINARY"
else
    if [ "${SLUICE_SKIP_BUILD:-0}" != "1" ]; then
        # -lstdc++ finds the static archive first: a directory holding only libstdc++.a, searched
        # before the compiler's own (-Xswiftc -L; -Xlinker -L would come after them).
        static_cxx="$(clang -print-file-name=libstdc++.a)"  # the toolchain clang that links
        [ -f "$static_cxx" ] || { log "no static libstdc++ (clang -print-file-name=libstdc++.a: $static_cxx); install libstdc++-12-dev"; exit 1; }
        mkdir -p "$build_dir/static-libstdc++"
        ln -sf "$static_cxx" "$build_dir/static-libstdc++/libstdc++.a"
        log "swift build -c release (static Swift stdlib and libstdc++) into $build_dir"
        swift build -c release --static-swift-stdlib --disable-local-rpath \
            -Xswiftc -enforce-exclusivity=unchecked \
            -Xswiftc -use-ld=lld -Xswiftc -Xfrontend -Xswiftc -function-sections \
            -Xswiftc -L"$(cd "$build_dir/static-libstdc++" && pwd)" \
            -Xlinker -z -Xlinker now -Xlinker --no-export-dynamic \
            -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --icf=all \
            -Xlinker --symbol-ordering-file="$here/sluice.order" -Xlinker --no-warn-symbol-ordering \
            -Xlinker -T -Xlinker "$here/unnamed-code.ld" \
            --product sluice --scratch-path "$build_dir" >&2
    fi
    binary="$build_dir/release/sluice"
fi
[ -x "$binary" ] || { log "no binary at $binary (build first or unset SLUICE_SKIP_BUILD)"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/stage"
umask 022

# Reproducible timestamps: the last commit's time when this is a git checkout.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH="$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH

# /usr/bin/sluice, stripped.
install -D -m 0755 "$binary" "$stage/usr/bin/sluice"
strip --remove-section=.comment --remove-section=.note "$stage/usr/bin/sluice"

upstream_version="${VERSION:-$("$stage/usr/bin/sluice" version | awk '{print $NF}')}"
case "$upstream_version" in
    [0-9]*) ;;
    *) log "cannot tell the version (got '$upstream_version'); set VERSION"; exit 1 ;;
esac
version="$upstream_version${DEB_REVISION:+-$DEB_REVISION}"
log "version $version, architecture $arch"

# /etc/sluice/gateway.conf (conffile), checked by the binary being packaged.
install -D -m 0644 "$here/gateway.conf" "$stage/etc/sluice/gateway.conf"
log "$("$stage/usr/bin/sluice" check -c "$stage/etc/sluice/gateway.conf")"

# The systemd unit.
install -D -m 0644 "$here/sluice.service" "$stage/lib/systemd/system/sluice.service"

# Man page.
install -d -m 0755 "$stage/usr/share/man/man1"
sed "s/@VERSION@/$upstream_version/" "$here/sluice.1" | gzip -9n > "$stage/usr/share/man/man1/sluice.1.gz"

# The fleet side: a Grafana dashboard and Prometheus alert rules (with their promtool unit test).
share="$stage/usr/share/sluice"
install -D -m 0644 "$root/contrib/grafana/sluice-dashboard.json" "$share/grafana/sluice-dashboard.json"
for file in sluice-alerts.yml sluice-alerts.test.yml; do
    install -D -m 0644 "$root/contrib/prometheus/$file" "$share/prometheus/$file"
done

# Documentation: copyright, changelog, the fully documented example configuration.
doc="$stage/usr/share/doc/sluice"
install -D -m 0644 "$here/debian/copyright" "$doc/copyright"
install -D -m 0644 "$root/gateway.conf.example" "$doc/examples/gateway.conf.example"
install -D -m 0644 "$root/docs/mosquitto-keys.md" "$doc/mosquitto-keys.md"
if [ -n "${DEB_REVISION:-}" ]; then changelog_name=changelog.Debian.gz; else changelog_name=changelog.gz; fi
{
    printf 'sluice (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Release %s.\n\n' "$upstream_version"
    printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$doc/$changelog_name"
chmod 0644 "$doc/$changelog_name" "$stage/usr/share/man/man1/sluice.1.gz"

# Depends: shared libraries of the binary (dpkg-shlibdeps needs a debian/control nearby).
mkdir -p "$work/shlibdeps/debian"
printf 'Source: sluice\n\nPackage: sluice\nArchitecture: any\n' > "$work/shlibdeps/debian/control"
shlibs="$(cd "$work/shlibdeps" && dpkg-shlibdeps -O -e"$stage/usr/bin/sluice" 2>"$work/shlibdeps.err" \
    | sed -n 's/^shlibs:Depends=//p')" || { cat "$work/shlibdeps.err" >&2; exit 1; }
[ -n "$shlibs" ] || { log "dpkg-shlibdeps found no dependencies"; cat "$work/shlibdeps.err" >&2; exit 1; }
# DT_RELR (-z pack-relative-relocs) needs glibc >= 2.36; this lld records no GLIBC_ABI_DT_RELR
# version for dpkg-shlibdeps to see, and an older loader would skip those relocations: say it here.
if readelf -d "$stage/usr/bin/sluice" | grep -q '(RELR)'; then
    libc_min="$(printf '%s\n' "$shlibs" | sed -n 's/.*libc6 (>= \([^)]*\)).*/\1/p')"
    if [ -n "$libc_min" ] && dpkg --compare-versions "$libc_min" lt 2.36; then
        shlibs="$(printf '%s\n' "$shlibs" | sed 's/libc6 (>= [^)]*)/libc6 (>= 2.36)/')"
    fi
fi
# libcrypto is dlopen'd on first use (Sources/CLibcrypto), so dpkg-shlibdeps cannot see it: libssl3 is named
# here, at the version dpkg-shlibdeps wrote when it was linked. A NEEDED entry would mean it is linked again.
if readelf -d "$stage/usr/bin/sluice" | grep -q 'NEEDED.*libcrypto'; then
    log "the binary links libcrypto: it must be loaded with dlopen (Sources/CLibcrypto)"; exit 1
fi
depends="$shlibs, libssl3 (>= 3.0.0), adduser"
log "Depends: $depends"

# DEBIAN/: control, conffiles, maintainer scripts, md5sums.
install -d -m 0755 "$stage/DEBIAN"
installed_size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@MAINTAINER@/$maintainer/" \
    -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@DEPENDS@/$depends/" \
    "$here/debian/control.in" > "$stage/DEBIAN/control"
printf '/etc/sluice/gateway.conf\n' > "$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/debian/$script" "$stage/DEBIAN/$script"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

mkdir -p "$out_dir"
deb="$out_dir/sluice_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
log "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
