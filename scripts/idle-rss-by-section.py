#!/usr/bin/env python3
"""Where a fresh, idle `sluice run` keeps its resident memory (issue 17, idle RSS): resident KB per
ELF section of the binary and of each shared library, split into file-backed (clean, shared with the
page cache) and anonymous (written: relocated data, .bss, copied-on-write), then the other mappings
(thread stacks, malloc arenas). Runs BINARY as scripts/idle-rss.sh --no-madvise does (example config,
free loopback port, temporary store, a no-op madvise preloaded), reads /proc/PID/smaps and
/proc/PID/pagemap (present bit per page; needs root for all fields) 2 s after start, then stops it.

    sudo python3 scripts/idle-rss-by-section.py BINARY [--libs]    # WAIT=SECONDS to sample later

A page is counted for every section it overlaps (split evenly). The kernel maps file pages by whole
page-cache folios and 64 KiB fault-around windows, so a section's figure is "pages resident", not
"bytes used"; the same binary moves by +-200 KB between runs with the page cache's state.
"""
import collections
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time


def sections(path):
    """(name, start, end) of the allocated sections of an ELF file, by virtual address."""
    found = []
    for line in subprocess.check_output(["readelf", "-SW", path], text=True).splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
        if m and int(m[2], 16) and "A" in m[4]:
            found.append((m[1], int(m[2], 16), int(m[2], 16) + int(m[3], 16)))
    return found


def read_maps(pid):
    maps, current = [], None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$", line)
            if m:
                current = dict(start=int(m[1], 16), end=int(m[2], 16), perm=m[3], off=int(m[4], 16), path=m[5].strip())
                maps.append(current)
            elif current is not None:
                k = re.match(r"^(\w+):\s+(\d+) kB", line)
                if k:
                    current[k[1]] = int(k[2])
    return maps


def resident_pages(pagemap, start, end):
    """(address, present, file-backed) per page; pagemap bit 63 = present, bit 61 = file page."""
    pagemap.seek(start // 4096 * 8)
    data = pagemap.read((end - start) // 4096 * 8)
    for i in range(0, len(data), 8):
        entry = struct.unpack_from("<Q", data, i)[0]
        yield start + i // 8 * 4096, bool(entry >> 63 & 1), bool(entry >> 61 & 1)


def by_section(path, maps, pagemap):
    """Resident KB per section of one mapped ELF file: {section: [file KB, anonymous KB]}."""
    own = [m for m in maps if m["path"] == path]
    base = min(m["start"] - m["off"] for m in own if m["off"] == 0)
    secs = sections(path)
    top = (max(end for _, _, end in secs) + 0xFFF) & ~0xFFF
    # The file's mappings and the anonymous one right after them that holds the rest of .bss.
    spans = [m for m in maps if base <= m["start"] < base + top and (m["path"] == path or m["path"] == "")]
    table = collections.OrderedDict((name, [0.0, 0.0]) for name, _, _ in secs)
    table["(between sections)"] = [0.0, 0.0]
    for span in spans:
        for address, present, file_page in resident_pages(pagemap, span["start"], span["end"]):
            if not present:
                continue
            offset = address - base
            hit = [name for name, start, end in secs if start < offset + 4096 and end > offset] or ["(between sections)"]
            for name in hit:
                table[name][0 if file_page else 1] += 4 / len(hit)
    return table


def show(label, table):
    print(f"== {label}: file {sum(v[0] for v in table.values()):.0f} KB, anonymous {sum(v[1] for v in table.values()):.0f} KB")
    for name, (file_kb, anon_kb) in table.items():
        if file_kb >= 0.5 or anon_kb >= 0.5:
            print(f"   {name:32s} file {file_kb:8.1f}  anon {anon_kb:8.1f}")


def main():
    binary = os.path.realpath(sys.argv[1])
    libs = "--libs" in sys.argv[2:]
    work = tempfile.mkdtemp(prefix="sluice-rss.")
    with open(f"{work}/noop.c", "w") as source:
        source.write("#include <sys/mman.h>\nint madvise(void *a, size_t l, int d) { (void)a; (void)l; (void)d; return 0; }\n")
    subprocess.check_call(["cc", "-shared", "-fPIC", "-o", f"{work}/noop_madvise.so", f"{work}/noop.c"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.mkdir(f"{work}/data")
    with open(f"{work}/idle.conf", "w") as conf:
        conf.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                   f"persistence_location {work}/data/\nlog_type error\n")
    env = dict(os.environ, LD_PRELOAD=f"{work}/noop_madvise.so")
    broker = subprocess.Popen([binary, "run", "-c", f"{work}/idle.conf"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(float(os.environ.get("WAIT", "2")))
        pid = broker.pid
        with open(f"/proc/{pid}/status") as status:
            print(" ".join(re.findall(r"^(?:VmRSS|RssAnon|RssFile|Threads):\s+.*$", status.read(), re.M)))
        names = collections.Counter(open(f"/proc/{pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{pid}/task"))
        print("threads:", dict(names))
        maps = read_maps(pid)
        with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            show("binary", by_section(binary, maps, pagemap))
            for lib in sorted({m["path"] for m in maps if m["path"].startswith("/") and m["path"] != binary}):
                rss = sum(m.get("Rss", 0) for m in maps if m["path"] == lib)
                if libs and rss >= 64:
                    show(lib, by_section(lib, maps, pagemap))
                else:
                    print(f"== {lib}: Rss {rss} KB")
        other, count = collections.Counter(), collections.Counter()
        for m in maps:
            if m["path"].startswith("/"):
                continue
            size = (m["end"] - m["start"]) // 1024
            key = m["path"] or ("guard" if m["perm"] == "---p" else f"anonymous {size} KB mapping")
            other[key] += m.get("Rss", 0)
            count[key] += 1
        print("== other mappings (Rss KB, count; 8192 KB = thread stacks, 132 KB = a thread's malloc arena;"
              " the one right after the binary holds .bss, counted above too)")
        for key, rss in other.most_common():
            if rss:
                print(f"   {key:40s} {rss:6d} x{count[key]}")
    finally:
        broker.terminate()
        broker.wait(timeout=30)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
