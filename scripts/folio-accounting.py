#!/usr/bin/env python3
"""Why /proc/PID/io write_bytes overstates what a store writes on kernels with large page-cache folios.

The kernel charges write_bytes when a clean folio becomes dirty, for the whole folio. ext4 on recent kernels
(6.18 here) caches a multi-page write in one large folio; rewriting 4 KiB of it later (LMDB reusing a page)
is then charged the whole folio, while writeback sends only the dirty 4 KiB blocks to the device.

Usage: folio-accounting.py DIR [BLOCKDEV]   (BLOCKDEV: the device under DIR, e.g. loop0, to print what it got;
meaningful only on a filesystem nothing else writes to, e.g. a loop-mounted ext4 image)."""
import mmap
import os
import sys


def write_bytes() -> int:
    for line in open("/proc/self/io"):
        if line.startswith("write_bytes"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def device_bytes(dev: str | None) -> int | None:
    if not dev:
        return None
    return int(open(f"/sys/block/{dev}/stat").read().split()[6]) * 512


def rewrites(fd: int, base: int, span: int, dev: str | None, n: int = 50) -> tuple[float, float | None]:
    os.sync()
    w0, d0 = write_bytes(), device_bytes(dev)
    for i in range(n):
        os.pwrite(fd, b"y" * 4096, base + (i * 12288) % span)
        os.fdatasync(fd)
    d1 = device_bytes(dev)
    return (write_bytes() - w0) / n, (d1 - d0) / n if d0 is not None else None


def main() -> int:
    directory, dev = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    path = os.path.join(directory, "folio-accounting.tmp")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        span = 256 * 1024
        os.pwrite(fd, b"x" * span, 0)  # one 256 KiB write: cached as large folio(s)
        os.fsync(fd)
        print("4 KiB rewrite + fdatasync into a range written by one 256 KiB write: /proc %.0f B, device %s B"
              % rewrites(fd, 0, span, dev))
        os.ftruncate(fd, 2 * span)
        os.pread(fd, span, span)  # read first: cached as 4 KiB folios, which a later large write reuses
        os.pwrite(fd, b"z" * span, span)
        os.fsync(fd)
        print("the same into a range read (4 KiB folios) before its 256 KiB write:  /proc %.0f B, device %s B"
              % rewrites(fd, span, span, dev))
        # LMDB maps its file read-only and reads pages through page faults. After the cache was dropped (a
        # restart, memory pressure), a fault reads ahead into large folios unless the map is MADV_RANDOM (LMDB's
        # MDB_NORDAHEAD), which faults single 4 KiB pages.
        for advice, label in ((mmap.MADV_NORMAL, "MADV_NORMAL"), (mmap.MADV_RANDOM, "MADV_RANDOM")):
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            view = mmap.mmap(fd, 2 * span, mmap.MAP_SHARED, mmap.PROT_READ)
            view.madvise(advice)
            for page in range(0, 2 * span, 4096):
                view[page]
            print("the same into a range faulted in through an mmap with %-11s:     /proc %.0f B, device %s B"
                  % ((label,) + rewrites(fd, 0, span, dev)))
            view.close()
    finally:
        os.close(fd)
        os.unlink(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
