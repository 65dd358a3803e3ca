#!/usr/bin/env python3
"""Usage: scripts/callgrind-calls.py OUT [PATTERN...]
Calls to every function whose name contains one of the patterns (default: allocation and copy functions), summed
over all callers from callgrind's `calls=` lines (BENCHMARKS.md: allocations and copies per bridged message are
the difference of two runs' counts divided by the difference of their message counts)."""
import collections
import re
import sys

PATTERNS = sys.argv[2:] or ["malloc", "memcpy", "memmove", "swift_allocObject", "swift_slowAlloc", "free"]
names: dict[str, str] = {}


def function(spec: str) -> str:
    """A function from `(id) name` (first mention) or `(id)` (later ones: callgrind compresses names)."""
    found = re.match(r"\((\d+)\)(?: (.*))?", spec)
    if not found:
        return spec
    if found.group(2) is not None:
        names[found.group(1)] = found.group(2)
    return names.get(found.group(1), spec)


calls: collections.Counter[str] = collections.Counter()
callee = None
with open(sys.argv[1], errors="replace") as out:
    for line in out:
        if line.startswith("cfn="):
            callee = function(line[4:].strip())
        elif line.startswith("fn="):
            function(line[3:].strip())
        elif line.startswith("calls=") and callee is not None:
            calls[callee] += int(line[6:].split()[0])
for name, count in calls.most_common():
    if any(pattern in name for pattern in PATTERNS):
        print(f"{count:>12} {name}")
