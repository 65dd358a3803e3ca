#!/usr/bin/env python3
"""Rewrite the key groups in packaging/sluice.1 from `sluice check --list-keys` (the key table in
Sources/SluiceConfig/Keys.swift), so the man page answers each key as the binary does.

    python3 scripts/gen-man-keys.py [SLUICE_BINARY]     # rewrites packaging/sluice.1 in place
    python3 scripts/gen-man-keys.py --check [BINARY]    # exit 1 when the page is out of date
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAN_PAGE = ROOT / "packaging" / "sluice.1"
GROUPS = [  # (answer in the key table, the heading line(s) the man page gives that group)
    ("honoured", ".B Honoured with Mosquitto's meaning:\n"),
    ("accepted, not honoured", ".B Accepted, not honoured\n(a warning from\n.BR \"sluice check\" ,\na notice at start):\n"),
    ("refused", ".B Refused\n(the file is rejected, saying why and what to write instead):\n"),
]
HONOURED_TAIL = "Some only at Mosquitto's default value; the key list says which.\n"


def key_groups(binary: str) -> dict[str, list[str]]:
    listing = subprocess.run([binary, "check", "--list-keys"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {answer: [] for answer, _ in GROUPS}
    # Sluice's own keys are described in a section of their own: the item headings (".TP" lines) there.
    own_section = MAN_PAGE.read_text().split(".B Sluice's own keys:", 1)[1].split("\n.SH", 1)[0]
    headings = re.findall(r"^\.TP\n(.*)$", own_section, re.M)
    own = {word for line in headings for word in re.findall(r"[a-z][a-z0-9_]+", line)}
    for key, answer in re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", listing, re.M):
        if answer in groups and not (answer == "honoured" and key in own):
            groups[answer].append(key)
    return groups


def render(groups: dict[str, list[str]]) -> str:
    parts = []
    for answer, heading in GROUPS:
        keys = groups[answer]
        lines = [f".BR {k.replace('-', chr(92) + '-')} ,\n" for k in keys[:-1]] + [f".BR {keys[-1]} .\n"]
        parts.append(heading + "".join(lines) + (HONOURED_TAIL if answer == "honoured" else ""))
    return ".PP\n".join(parts) + ".PP\n"


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--check"]
    binary = args[0] if args else str(ROOT / ".build" / "debug" / "sluice")
    page = MAN_PAGE.read_text()
    start = page.index(GROUPS[0][1])
    end = page.index(".B Sluice's own keys:")
    updated = page[:start] + render(key_groups(binary)) + page[end:]
    if "--check" in sys.argv:
        if updated != page:
            print("packaging/sluice.1: key groups differ from `sluice check --list-keys`; run scripts/gen-man-keys.py")
            return 1
        return 0
    MAN_PAGE.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
