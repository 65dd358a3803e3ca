#!/usr/bin/env python3
"""Write packaging/sluice.order: the functions a running gateway executes, for the linker's
--symbol-ordering-file (packaging/build-deb.sh), so they sit together at the front of .text.

Why: the kernel maps an executable's code in 64 KiB fault-around windows. Scattered among 17 MB
of code, the few thousand functions that start-up and an idle broker run touch ~170 windows
(11 MB of resident code); packed together they touch a fraction of that (issue 17, idle RSS).
A stale list only costs RSS: names no longer in the binary are ignored (--no-warn-symbol-ordering).

    python3 scripts/gen-link-order.py [SLUICE_BINARY]   # default .build-release/release/sluice

The binary must be a release build made with build-deb.sh's flags (function sections) and keep
its symbol table (the unstripped build output; valgrind cannot read Swift 6.3's DWARF 5, so pass a
copy made with `strip --strip-debug`, which keeps the symbols). Needs valgrind (callgrind), mosquitto_pub and
mosquitto_sub. Runs the broker under callgrind on a free loopback port with a temporary store:
phase 1 is start-up and 3 s idle; phase 2 is one subscriber and a few QoS 0/1/2 publishes, then
SIGTERM. The list is phase 1's functions, then those only phase 2 ran (idle code first).
Functions without a symbol (callgrind's `0x...` names: closure destroyers and other private
helpers) cannot be listed; packaging/unnamed-code.ld gathers them instead.
Takes about a minute.
"""
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ORDER_FILE = pathlib.Path(os.environ.get("SLUICE_ORDER_FILE", ROOT / "packaging" / "sluice.order"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the broker exited early ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the broker did not listen on {port} within {timeout:.0f} s")


def functions_run(dump: pathlib.Path, binary_name: str) -> list[str]:
    """Functions of the main executable in a callgrind dump, in the order the dump names them.
    Callgrind compresses names: `fn=(12) name` once, `fn=(12)` afterwards; `'2` marks recursion."""
    objects: dict[str, str] = {}
    names: dict[str, str] = {}
    current_object = ""
    seen: set[str] = set()
    ordered: list[str] = []
    entry = re.compile(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")
    for line in dump.read_text(errors="replace").splitlines():
        match = entry.match(line)
        if not match:
            continue
        kind, ident, name = match.groups()
        table = objects if kind.endswith("ob") else names
        if name:
            table[ident] = name
        if kind == "ob":
            current_object = objects.get(ident, "")
        elif kind == "fn" and os.path.basename(current_object) == binary_name:
            symbol = re.sub(r"'\d+$", "", names.get(ident, ""))
            # Valgrind calls the executable's entry point "(below main)"; the linker knows it as _start.
            symbol = "_start" if symbol == "(below main)" else symbol
            if symbol and symbol not in seen and not symbol.startswith("0x"):
                seen.add(symbol)
                ordered.append(symbol)
    return ordered


def main() -> None:
    binary = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".build-release" / "release" / "sluice")
    for tool in ("valgrind", "callgrind_control", "mosquitto_pub", "mosquitto_sub"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}")
    with tempfile.TemporaryDirectory(prefix="sluice-order.") as tmp:
        work = pathlib.Path(tmp)
        port = free_port()
        (work / "gateway.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {work}/\nlog_type error\n"
        )
        out = work / "callgrind.out"
        broker = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}",
             str(binary.resolve()), "run", "-c", str(work / "gateway.conf")],
            stdout=subprocess.DEVNULL, stderr=open(work / "valgrind.log", "w"),
        )
        try:
            wait_for_port(port, broker, timeout=180)
            time.sleep(3)  # idle ticks (250 ms), the first status samples
            subprocess.run(["callgrind_control", "--dump=idle", str(broker.pid)], check=True,
                           stdout=subprocess.DEVNULL, timeout=60)
            sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "order/#", "-q", "2",
                                    "-C", "9", "-W", "60"], stdout=subprocess.DEVNULL)
            time.sleep(2)
            for qos in ("0", "1", "2"):
                subprocess.run(["mosquitto_pub", "-p", str(port), "-t", f"order/q{qos}", "-q", qos,
                                "-r", "-m", "x" * 64, "-i", f"order-{qos}"], check=True, timeout=60)
                subprocess.run(["mosquitto_pub", "-p", str(port), "-t", f"order/q{qos}", "-q", qos,
                                "-m", "y" * 64], check=True, timeout=60)
                subprocess.run(["mosquitto_pub", "-p", str(port), "-t", f"order/q{qos}", "-q", qos,
                                "-m", "z" * 64], check=True, timeout=60)
            sub.wait(timeout=60)
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(timeout=120)
        dumps = sorted(work.glob("callgrind.out*"))
        idle_dump = next((d for d in dumps if d.name != out.name), None)
        if idle_dump is None or not out.exists():
            sys.exit("callgrind wrote no dumps: " + (work / "valgrind.log").read_text()[-2000:])
        idle = functions_run(idle_dump, binary.resolve().name)
        traffic = [f for f in functions_run(out, binary.resolve().name) if f not in set(idle)]
    ORDER_FILE.write_text("\n".join(idle + traffic) + "\n")
    print(f"{ORDER_FILE}: {len(idle)} idle + {len(traffic)} traffic functions")


if __name__ == "__main__":
    main()
