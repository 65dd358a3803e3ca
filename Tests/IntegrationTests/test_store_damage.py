"""Damaged stores and two processes on one store (issue 13, cases 4, 5 and 6), against the real binary.

Each test builds a real store (2,000 PUBACKed messages queued for a central that is down), damages the
file the way flash and filesystems do (truncation, zero length, bit flips in records, broken page
headers) and checks that `sluice` never dies by a signal, says what is wrong, contains the damage and
delivers every undamaged message.
"""
from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bridgeharness import (BridgeEnv, BridgeSpec, Gateway, assert_delivery, bridge_env, free_port,  # noqa: F401
                           publish_numbered, require_sluice_binary, wait_until)

N = 2000
PAGE = 4096


def sluice(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(require_sluice_binary()), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def queued_store(env: BridgeEnv, *, metrics_port: int | None = None):
    """A gateway whose bridge's central is down, with 1..N PUBACKed into its queue, then stopped.

    Returns (central (not started), gateway (stopped), path of sluice.db)."""
    central = env.central()
    extra = [f"metrics_listener {metrics_port} 127.0.0.1"] if metrics_port else []
    gw = env.gateway([BridgeSpec([central.port])], extra=extra).start()
    publish_numbered(gw.port, "sensors/x", 1, N)
    gw.stop()
    assert gw.proc is None
    return central, gw, gw.data_dir / "sluice.db"


# The end of the topic and the properties field of the bridge's records: no property bytes for a message
# without properties and without a rule TTL (an older build stored the empty MQTT 5 list, one byte 0).
RECORD_PREFIX = b"sensors/x" + b"\0\0\0\0"


def record_pattern(n: int) -> bytes:
    """The bytes of message n's record from the end of its topic (…sensors/x) to the end of its payload."""
    payload = str(n).encode()
    return RECORD_PREFIX + len(payload).to_bytes(4, "big") + payload


def flip_records(path: Path, seqs: list[int], how: str) -> int:
    """Damages every copy (LMDB leaves stale copies in free pages) of the given messages' records.

    'payload': flips a payload byte (only the checksum sees it); 'length': breaks the payload length
    field (the record no longer decodes). Returns the number of copies changed."""
    data = bytearray(path.read_bytes())
    changed = 0
    for n in seqs:
        pattern = record_pattern(n)
        for m in re.finditer(re.escape(pattern), data):
            # The pattern must end the record: the next byte is the 4-byte CRC, not more payload digits.
            if how == "payload":
                data[m.end() - 1] ^= 0x01  # '7' -> '6': still a number, still decodes
            else:
                data[m.start() + len(RECORD_PREFIX)] = 0x7F  # payload length ~2 GB: overruns the record
            changed += 1
    path.write_bytes(bytes(data))
    return changed


def assert_no_signal(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode >= 0, (f"{what} died by signal {-result.returncode}\nstdout:\n{result.stdout}\n"
                                    f"stderr:\n{result.stderr}")


def run_until_exit(gw: Gateway, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """`sluice run` on a store expected to be refused: it must exit by itself, not serve."""
    try:
        return sluice("run", "-c", str(gw.conf_path), timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`sluice run` kept running on a damaged store for {timeout}s")


@pytest.mark.parametrize("cut", ["half", "8KiB"])
def test_truncated_store_is_refused_with_the_path_never_a_signal(bridge_env, cut):
    _, gw, db = queued_store(bridge_env)
    size = db.stat().st_size
    assert size > 4 * 8192, size
    with open(db, "r+b") as f:
        f.truncate(size // 2 if cut == "half" else 8192)

    run = run_until_exit(gw)
    assert_no_signal(run, "sluice run")
    assert run.returncode > 0
    out = run.stdout + run.stderr
    assert str(db) in out, out
    assert "truncated" in out and "salvage" in out, out

    stats = sluice("queue", "stats", "-c", str(gw.conf_path))
    assert_no_signal(stats, "sluice queue stats")
    assert stats.returncode > 0 and str(db) in stats.stderr, stats.stderr

    check = sluice("store", "check", "-c", str(gw.conf_path))
    assert_no_signal(check, "sluice store check")
    assert check.returncode == 2, (check.returncode, check.stdout, check.stderr)
    assert "truncated" in check.stderr, check.stderr


def test_zero_length_store_warns_and_starts_empty(bridge_env):
    central = bridge_env.central()
    gw = bridge_env.gateway([BridgeSpec([central.port])])
    gw.data_dir.mkdir(parents=True)
    (gw.data_dir / "sluice.db").write_bytes(b"")
    gw.start()
    assert wait_until(lambda: gw.count_log(r"store file was empty") == 1, 10), gw.log_tail()
    publish_numbered(gw.port, "sensors/x", 1, 10)
    stats = sluice("queue", "stats", "-c", str(gw.conf_path))
    assert stats.returncode == 0 and "depth=10" in stats.stdout, stats


def test_bit_flips_in_records_are_quarantined_and_the_rest_delivered(bridge_env):
    metrics_port = free_port()
    central, gw, db = queued_store(bridge_env, metrics_port=metrics_port)
    # Numbers far apart: a flipped last digit must not turn one target into another.
    payload_hit = [7, 500, 777, 1337, 1999]
    length_hit = [3, 1000, 1500, 2000, 250]
    assert flip_records(db, payload_hit, "payload") >= len(payload_hit)
    assert flip_records(db, length_hit, "length") >= len(length_hit)
    damaged = sorted(payload_hit + length_hit)

    check = sluice("store", "check", "-c", str(gw.conf_path))
    assert_no_signal(check, "sluice store check")
    assert check.returncode == 1, (check.stdout, check.stderr)
    assert f"queue central: {N} record(s), {len(damaged)} damaged" in check.stdout, check.stdout
    assert "checksum mismatch" in check.stdout, check.stdout

    central.start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    gw.start()
    expected = [n for n in range(1, N + 1) if n not in damaged]
    ok = counter.wait_distinct(len(expected), 90)
    assert ok, f"delivered {counter.distinct()} of {len(expected)}\n{bridge_env.logs()}"
    counter.settle()
    assert_delivery(counter, expected, max_duplicates=0, context=bridge_env.logs())

    # Counted in stats and /metrics, logged, listed and exported.
    assert wait_until(lambda: "quarantined=10" in sluice("queue", "stats", "-c", str(gw.conf_path)).stdout, 10)
    stats = sluice("queue", "stats", "-c", str(gw.conf_path))
    assert "depth=0" in stats.stdout, stats.stdout
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    assert re.search(r'sluice_store_quarantined_total\{bridge="central"\} 10\b', body), body
    assert gw.count_log(r"moved to the quarantine") >= 1, gw.log_tail()
    export = gw.workdir / "export"
    listing = sluice("store", "quarantine", "-c", str(gw.conf_path), "--export", str(export))
    assert listing.returncode == 0, listing
    assert "10 record(s) in the quarantine" in listing.stdout, listing.stdout
    # The checksum is checked first, so both kinds of damage read as a mismatch.
    assert listing.stdout.count("checksum mismatch") == len(damaged), listing.stdout
    assert sorted(int(p.stem.split("-")[-1]) for p in export.glob("*.bin")) == damaged
    # The quarantine is contained damage: a check is clean again.
    assert sluice("store", "check", "-c", str(gw.conf_path)).returncode == 0

    # The gateway keeps serving: a new message still goes through.
    publish_numbered(gw.port, "sensors/x", N + 1, N + 1)
    assert counter.wait_distinct(len(expected) + 1, 20), bridge_env.logs()


def test_salvage_round_trip(bridge_env):
    central, gw, db = queued_store(bridge_env)
    damaged = [10, 20, 30]
    assert flip_records(db, damaged, "payload") >= len(damaged)
    target = gw.workdir / "salvaged"
    salvage = sluice("store", "salvage", "-c", str(gw.conf_path), "--to", str(target))
    assert_no_signal(salvage, "sluice store salvage")
    assert salvage.returncode == 1, (salvage.stdout, salvage.stderr)  # 1: something was lost
    assert f"queue central: {N - 3} copied, 3 damaged" in salvage.stdout, salvage.stdout
    again = sluice("store", "salvage", "-c", str(gw.conf_path), "--to", str(target))
    assert again.returncode == 2 and "exists" in again.stderr, again  # never over a store
    assert sluice("store", "check", "--file", str(target / "sluice.db")).returncode == 0

    # Point the gateway at the salvaged store: everything readable reaches the central.
    gw.conf_text = gw.conf_text.replace(f"persistence_location {gw.data_dir}/",
                                        f"persistence_location {target}/")
    central.start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    gw.start()
    expected = [n for n in range(1, N + 1) if n not in damaged]
    assert counter.wait_distinct(len(expected), 90), bridge_env.logs()
    counter.settle()
    assert_delivery(counter, expected, max_duplicates=0, context=bridge_env.logs())
    stats = sluice("queue", "stats", "-c", str(gw.conf_path))
    assert "quarantined=3" in stats.stdout, stats.stdout


def u(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset:offset + size], "little")


def live_leaf_pages(data: bytes, db_name: bytes = b"queues") -> list[int]:
    """Page numbers of the live leaf pages of a named database, found by walking LMDB's B-tree from the
    newer meta page (stale copies of old pages, left on the free list, are not included)."""
    metas = [0, PAGE]
    newer = max(metas, key=lambda off: u(data, off + 144, 8))
    main_root = u(data, newer + 128, 8)

    def leaves(root: int) -> list[int]:
        out, stack = [], [root]
        while stack:
            page = stack.pop()
            base = page * PAGE
            flags, lower = u(data, base + 10, 2), u(data, base + 12, 2)
            ptrs = [u(data, base + 16 + 2 * i, 2) for i in range((lower - 16) // 2)]
            if flags & 0x01:  # branch: child page numbers
                stack += [u(data, base + p, 4) | u(data, base + p + 4, 2) << 32 for p in ptrs]
            elif flags & 0x02:
                out.append(page)
        return out

    main_leaves = leaves(main_root)
    for page in main_leaves:
        base = page * PAGE
        for i in range((u(data, base + 12, 2) - 16) // 2):
            node = base + u(data, base + 16 + 2 * i, 2)
            ksize = u(data, node + 6, 2)
            if data[node + 8:node + 8 + ksize] == db_name:
                return leaves(u(data, node + 8 + ksize + 40, 8))
    # Store layout 2: the queue records are in the main database itself.
    return [page for page in main_leaves if b"sensors/x" in data[page * PAGE:(page + 1) * PAGE]]


@pytest.mark.parametrize("damage", ["flags", "lower", "node-pointer", "node-area"])
def test_damaged_page_headers_never_kill_by_signal(bridge_env, damage):
    central, gw, db = queued_store(bridge_env)
    data = bytearray(db.read_bytes())
    pages = live_leaf_pages(data)
    assert len(pages) > 4, pages
    for page in pages[len(pages) // 3: len(pages) // 3 + 3]:
        base = page * PAGE
        if damage == "flags":
            data[base + 10] = 0x01  # a leaf that claims to be a branch
        elif damage == "lower":
            data[base + 12:base + 14] = (0xFFF0).to_bytes(2, "little")  # thousands of keys
        elif damage == "node-pointer":
            data[base + 16:base + 18] = (0xFFFF).to_bytes(2, "little")  # first node far outside its page
        else:
            data[base + 32:base + 40] = (0xFFFFFF).to_bytes(8, "little")  # garbage in the node area
    db.write_bytes(bytes(data))

    check = sluice("store", "check", "-c", str(gw.conf_path))
    assert_no_signal(check, "sluice store check")
    assert check.returncode == 1 and "broken pages" in check.stdout, (check.returncode, check.stdout, check.stderr)

    central.start()
    proc = subprocess.Popen([str(require_sluice_binary()), "run", "-c", str(gw.conf_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Refused at start (before LMDB touches the broken pages), naming the path and the way out.
        # Without the page check: SIGSEGV in the drain, or SIGABRT from mdb_assert at the first removal.
        assert wait_until(lambda: proc.poll() is not None, 20), "sluice run started on broken pages"
        out = proc.stdout.read()
        assert proc.returncode == 1, f"sluice run ended with {proc.returncode}:\n{out}"
        assert str(db) in out and "broken pages" in out and "salvage" in out, out

        # The way out: salvage what the sound pages hold, then serve from the new store.
        target = gw.workdir / "salvaged"
        salvage = sluice("store", "salvage", "-c", str(gw.conf_path), "--to", str(target))
        assert_no_signal(salvage, "sluice store salvage")
        assert salvage.returncode == 1 and "lost records of" in salvage.stdout, salvage
        copied = int(re.search(r"queue central: (\d+) copied", salvage.stdout).group(1))
        assert N - 3 * 80 < copied < N, salvage.stdout  # three leaves of ~55 records each are lost
        gw.conf_text = gw.conf_text.replace(f"persistence_location {gw.data_dir}/",
                                            f"persistence_location {target}/")
        counter = bridge_env.counter(central.port, "gw1/sensors/#")
        gw.start()
        assert counter.wait_distinct(copied, 60), bridge_env.logs()
        counter.settle()
        got = counter.seqs()
        assert len(got) == len(set(got)) == copied and set(got) <= set(range(1, N + 1))
        assert got == sorted(got), "order not kept"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        assert proc.returncode is not None and proc.returncode >= 0, f"signal {-proc.returncode}"


def test_second_run_on_the_same_store_refuses_naming_the_pid(bridge_env):
    central = bridge_env.central().start()
    gw = bridge_env.gateway([BridgeSpec([central.port])]).start()
    gw.wait_connected()
    second = bridge_env.gateway([BridgeSpec([central.port])])
    second.conf_text = second.conf_text.replace(f"persistence_location {second.data_dir}/",
                                                f"persistence_location {gw.data_dir}/")
    second.conf_path.write_text(second.conf_text)
    started = time.monotonic()
    run = run_until_exit(second, timeout=20)
    assert time.monotonic() - started < 10, "the refusal was not immediate"
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert f"PID {gw.proc.pid}" in run.stderr and str(gw.data_dir / "sluice.db") in run.stderr, run.stderr
    assert not second.alive() and gw.alive()
    assert (gw.data_dir / "sluice.lock").read_text().strip() == str(gw.proc.pid)

    # Read-only tools still work beside the running gateway.
    publish_numbered(gw.port, "sensors/x", 1, 5)
    stats = sluice("queue", "stats", "-c", str(second.conf_path))
    assert stats.returncode == 0 and "central:" in stats.stdout, stats
    peek = sluice("queue", "peek", "-c", str(second.conf_path), "central")
    assert peek.returncode == 0, peek
    check = sluice("store", "check", "-c", str(second.conf_path))
    assert check.returncode == 0 and "OK" in check.stdout, (check.stdout, check.stderr)
    # ... also while the gateway commits all the time (appends and the drain's removals): the page check
    # walks the snapshot of a held read transaction, so no page rewritten meanwhile reads as damage.
    publisher = threading.Thread(target=publish_numbered, args=(gw.port, "sensors/x", 6, 6000))
    publisher.start()
    try:
        for _ in range(3):
            busy = sluice("store", "check", "-c", str(second.conf_path))
            assert busy.returncode == 0, (busy.stdout, busy.stderr)
    finally:
        publisher.join(timeout=120)

    # Once the first has stopped (even by kill -9) the store is free again.
    gw.kill()
    second.start()
    second.wait_connected()
