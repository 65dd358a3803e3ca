"""Storage faults (issue 13, cases 1, 2 and 8): a full filesystem under the bridge queue and under
broker persistence, /healthz while full, store_max_size and the free-space warning.

Every acknowledged message is counted: a message that got a success PUBACK reaches the central (or
the restarted broker's session), or it is a drop counted identically by /metrics and
`sluice queue stats`. The store lives on a small tmpfs mounted here (needs root: skipped otherwise,
with the reason) and unmounted in teardown.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import mqttraw as raw
from bridgeharness import (HOST, BridgeSpec, Central, Counter, Gateway, free_port,
                           require_sluice_binary, uid, wait_until)

PAYLOAD_PAD = 400  # bytes per message: 16 MiB fills after a few tens of thousands


def payload(seq: int) -> bytes:
    # int(b"00000042   ...") == 42: the central's Counter parses the number, blanks allowed.
    return f"{seq:08d}".encode() + b" " * PAYLOAD_PAD


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a tmpfs of the given size at a folder and unmounts it afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def _mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       check=True, capture_output=True, timeout=10)
        mounted.append(path)
        return path

    yield _mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True,
                   capture_output=True, timeout=10)


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


REASONS = ("max_messages", "max_bytes", "max_age", "store_full")


def assert_metrics_match_queue_stats(metrics_port: int, stats: dict[str, int], bridge: str = "central") -> None:
    """/metrics and `sluice queue stats` tell the same story, counter by counter."""
    _, text = scrape(metrics_port, "/metrics")
    for reason in REASONS:
        assert metric(text, "sluice_bridge_queue_dropped_total", bridge=bridge, reason=reason) \
            == stats.get(f"dropped.{reason}", 0), (reason, stats)
        assert metric(text, "sluice_bridge_queue_rejected_total", bridge=bridge, reason=reason) \
            == stats.get(f"rejected.{reason}", 0), (reason, stats)
    assert metric(text, "sluice_bridge_queue_depth", bridge=bridge) == stats["depth"]


def queue_stats(gw: Gateway, bridge: str = "central") -> dict[str, int]:
    """`sluice queue stats` for one bridge, as {"depth": n, "dropped.store_full": n, ...}."""
    out = subprocess.run([str(require_sluice_binary()), "queue", "stats", "-c", str(gw.conf_path), bridge],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    values = {"depth": int(re.search(r"depth=(\d+)", line).group(1))}
    for kind in ("dropped", "rejected"):
        part = re.search(kind + r"=(\S+)", line).group(1)
        if part != "0":
            for item in part.split(","):
                reason, count = item.split("=")
                values[f"{kind}.{reason}"] = int(count)
    return values


class Publisher:
    """Numbered QoS 1 publishes over a raw socket with a window, recording every PUBACK.

    When the gateway closes the connection, the messages in flight are not acknowledged and are
    left out (a real client would resend them; here they only must not count as acknowledged);
    the publisher reconnects and goes on."""

    def __init__(self, port: int, *, version: int = 4, window: int = 50, topic: str = "sensors/fill"):
        self.port, self.version, self.window, self.topic = port, version, window, topic
        self.acked: set[int] = set()
        self.refused: dict[int, int] = {}  # seq -> PUBACK reason code (MQTT 5)
        self.disconnects = 0
        self.client_id = uid("pub")

    def run(self, seqs, *, max_disconnects: int = 1_000_000, timeout: float = 180.0,
            retain: bool = False) -> None:
        pending = list(seqs)
        pending.reverse()
        inflight: dict[int, int] = {}
        next_pid = 1
        client = None
        deadline = time.monotonic() + timeout
        while (pending or inflight) and time.monotonic() < deadline:
            try:
                if client is None:
                    client = raw.RawClient(HOST, self.port, version=self.version, timeout=10)
                    ack = client.connect(self.client_id, version=self.version)
                    assert ack.reason == 0, f"CONNACK {ack!r}"
                while pending and len(inflight) < self.window:
                    seq = pending.pop()
                    client.send(raw.publish(self.topic, payload(seq), qos=1, packet_id=next_pid,
                                            version=self.version, retain=retain))
                    inflight[next_pid] = seq
                    next_pid = next_pid % 65535 + 1
                packet = client.read_packet(15)
                if packet.ptype == raw.DISCONNECT:
                    raise raw.Closed()
                if packet.ptype == raw.PUBACK and packet.packet_id in inflight:
                    seq = inflight.pop(packet.packet_id)
                    if (packet.reason or 0) == 0:
                        self.acked.add(seq)
                    else:
                        self.refused[seq] = packet.reason
            except (raw.Closed, OSError):
                self.disconnects += 1
                inflight.clear()
                if client is not None:
                    client.close()
                client = None
                if self.disconnects >= max_disconnects:
                    break
                time.sleep(0.05)
        if client is not None:
            client.send(raw.disconnect(self.version))
            client.close()


def start_dark_central(tmp_path: Path) -> tuple[Central, Counter]:
    """A central with the counting subscriber's persistent session, then stopped (the link is down)."""
    central = Central(tmp_path / "central").start()
    counter = Counter(central.port, "gw1/#").start()
    central.stop()
    return central, counter


def fill_gateway(tmp_path, tmpfs, central: Central, overflow: str, extra: list[str]) -> tuple[Gateway, int]:
    """A gateway whose store lives on a 16 MiB tmpfs, bridged to the (stopped) central."""
    metrics_port = free_port()
    gw = Gateway(tmp_path / "gw",
                 [BridgeSpec([central.port], extra=[f"queue_overflow {overflow}"])],
                 extra=[f"metrics_listener {metrics_port} {HOST}"] + extra)
    tmpfs(gw.data_dir, "16m")
    return gw, metrics_port


@pytest.mark.parametrize("min_free", ["default", "0"])
def test_full_tmpfs_drop_oldest_every_pubacked_message_is_delivered_or_a_counted_drop(tmp_path, tmpfs, min_free):
    """Issue 13 case 1 as a new user meets it (default free-space guard), and with the guard off so
    that the filesystem really fills (mdb_txn_commit fails with EIO from a short write)."""
    central, counter = start_dark_central(tmp_path)
    extra = [] if min_free == "default" else [f"store_min_free {min_free}"]
    gw, metrics_port = fill_gateway(tmp_path, tmpfs, central, "drop_oldest", extra)
    gw.start()
    try:
        total = 50_000  # more than 16 MiB holds
        pub = Publisher(gw.port)
        pub.run(range(total))
        stats = queue_stats(gw)
        print(f"acked={len(pub.acked)} refused={len(pub.refused)} disconnects={pub.disconnects} stats={stats}")
        if min_free == "default":
            assert stats.get("dropped.store_full", 0) > 0, f"the disk never filled: {stats}"
        else:
            # A filesystem full to the last block: LMDB copies pages on write, so even dropping the oldest
            # needs free pages, and with none left the drop cannot commit either; the new message is then
            # refused (counted, never acknowledged). The default guard exists to keep out of this corner.
            full = stats.get("dropped.store_full", 0) + stats.get("rejected.store_full", 0)
            assert full > 0, f"the disk never filled: {stats}"
        status, body = scrape(metrics_port, "/healthz")
        assert status == 503 and "full" in body, (status, body)
        _, text = scrape(metrics_port, "/metrics")
        assert metric(text, "sluice_store_writable") == 0
        log_lines = gw.count_log(r"store (full|writes fail)")
        print(f"log: {log_lines} store-state line(s), {gw.count_log(r'store pressure')} summary line(s), "
              f"{gw.count_log(r'(warning|error):')} warning/error lines in all")
        assert log_lines <= 3, f"{log_lines} store-state lines: said once, not per message"

        remount(gw.data_dir, "256m")
        central.start()
        assert wait_until(lambda: queue_stats(gw)["depth"] == 0, 180, 0.5), queue_stats(gw)
        time.sleep(1.0)
        delivered = set(counter.seqs())
        stats = queue_stats(gw)
        dropped = stats.get("dropped.store_full", 0)
        assert_metrics_match_queue_stats(metrics_port, stats)
        lost = pub.acked - delivered
        print(f"acked={len(pub.acked)} delivered={len(delivered)} dropped={dropped} lost_or_dropped={len(lost)}")
        # An acknowledged message dropped by drop_oldest is a counted drop, not a loss.
        assert len(lost) <= dropped, f"{len(lost) - dropped} acknowledged messages lost"
        assert len(pub.acked) + len(pub.refused) > 0
        assert wait_until(lambda: scrape(metrics_port, "/healthz")[0] == 200, 20, 0.5), \
            scrape(metrics_port, "/healthz")
    finally:
        gw.stop()
        counter.close()
        central.stop()


@pytest.mark.parametrize("version", [4, 5])
def test_full_tmpfs_reject_new_refuses_instead_of_acknowledging(tmp_path, tmpfs, version):
    central, counter = start_dark_central(tmp_path)
    gw, metrics_port = fill_gateway(tmp_path, tmpfs, central, "reject_new", ["store_min_free 0"])
    gw.start()
    try:
        pub = Publisher(gw.port, version=version, window=20)  # the gateway announces Receive Maximum 20
        pub.run(range(50_000), max_disconnects=20)
        print(f"v{version}: acked={len(pub.acked)} refused={len(pub.refused)} disconnects={pub.disconnects}")
        if version == 5:
            assert pub.refused and set(pub.refused.values()) <= {0x97}, pub.refused
        else:
            assert pub.disconnects >= 1 and not pub.refused
        assert len(pub.acked) < 50_000
        status, body = scrape(metrics_port, "/healthz")
        assert status == 503, body

        remount(gw.data_dir, "256m")
        central.start()
        assert wait_until(lambda: queue_stats(gw)["depth"] == 0, 180, 0.5), queue_stats(gw)
        time.sleep(1.0)
        delivered = set(counter.seqs())
        lost = pub.acked - delivered
        assert not lost, f"{len(lost)} acknowledged messages never reached the central"
        assert_metrics_match_queue_stats(metrics_port, queue_stats(gw))
    finally:
        gw.stop()
        counter.close()
        central.stop()


def test_free_space_guard_applies_the_policy_before_the_filesystem_is_full(tmp_path, tmpfs):
    central, counter = start_dark_central(tmp_path)
    gw, metrics_port = fill_gateway(tmp_path, tmpfs, central, "drop_oldest", ["store_min_free 4MB"])
    gw.start()
    try:
        pub = Publisher(gw.port)
        pub.run(range(40_000))
        stats = queue_stats(gw)
        free = os.statvfs(gw.data_dir)
        free_bytes = free.f_bavail * free.f_frsize
        print(f"acked={len(pub.acked)} free={free_bytes} stats={stats}")
        assert len(pub.acked) == 40_000 and pub.disconnects == 0
        assert stats.get("dropped.store_full", 0) > 0
        assert free_bytes >= 3 << 20, f"only {free_bytes} bytes left: the guard did not hold"
        assert "store_min_free" in scrape(metrics_port, "/healthz")[1]
    finally:
        gw.stop()
        counter.close()
        central.stop()


def test_broker_state_saved_after_a_full_disk_nothing_acknowledged_is_lost(tmp_path, tmpfs):
    gw = Gateway(tmp_path / "gw", [], extra=["store_min_free 0"])
    tmpfs(gw.data_dir, "16m")
    gw.start()
    keeper_id = uid("keeper")
    try:
        keeper = raw.RawClient(HOST, gw.port, timeout=10)
        keeper.connect(keeper_id, clean=False)
        keeper.send(raw.subscribe([("p/#", 1)], packet_id=1))
        keeper.expect(raw.SUBACK)
        keeper.send(raw.disconnect())
        keeper.close()
        # Fill the filesystem to the last byte.
        filler = gw.data_dir / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, timeout=60)
        pub = Publisher(gw.port, topic="p/x")
        pub.run(range(200), max_disconnects=50, timeout=60)
        retained = Publisher(gw.port, topic="p/retained")
        retained.run([1000], max_disconnects=3, timeout=20, retain=True)
        acked_while_full = set(pub.acked)
        print(f"while full: acked={len(pub.acked)} disconnects={pub.disconnects} retained={retained.acked}")

        filler.unlink()
        assert wait_until(lambda: gw.count_log(r"broker state saved again") > 0, 40, 0.2), gw.log_tail()
        # The publishers send again what was not acknowledged, as MQTT clients do.
        pub.run([s for s in range(200) if s not in pub.acked], timeout=60)
        retained.run([] if retained.acked else [1000], timeout=20, retain=True)
        assert len(pub.acked) == 200 and retained.acked == {1000}

        gw.stop()
        gw.start()
        keeper = raw.RawClient(HOST, gw.port, timeout=10)
        assert keeper.connect(keeper_id, clean=False).session_present
        got: set[int] = set()
        deadline = time.monotonic() + 30
        while not pub.acked <= got and time.monotonic() < deadline:
            try:
                packet = keeper.read_packet(5)
            except TimeoutError:
                break
            if packet.ptype == raw.PUBLISH and packet.topic == "p/x":
                got.add(int(packet.payload))
                keeper.send(raw.ack(raw.PUBACK, packet.packet_id))
        keeper.close()
        assert not (pub.acked - got), f"{len(pub.acked - got)} acknowledged messages lost " \
                                      f"({len(acked_while_full)} acknowledged while full)"
        sub = raw.RawClient(HOST, gw.port, timeout=10)
        sub.connect(uid("reader"))
        sub.send(raw.subscribe([("p/retained", 1)], packet_id=1))
        packets = [sub.read_packet(5) for _ in range(2)]
        sub.close()
        assert any(p.ptype == raw.PUBLISH and p.retain and int(p.payload) == 1000 for p in packets), packets
    finally:
        gw.stop()


def test_check_warns_when_store_max_size_exceeds_the_free_space(tmp_path):
    conf = tmp_path / "gateway.conf"
    conf.write_text(f"listener {free_port()} {HOST}\npersistence true\n"
                    f"persistence_location {tmp_path}/data/\nstore_max_size 1000000GB\n")
    out = subprocess.run([str(require_sluice_binary()), "check", "-c", str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "warning:" in out.stdout and "store_max_size" in out.stdout and str(conf) in out.stdout, out.stdout
    conf.write_text(f"listener {free_port()} {HOST}\npersistence true\n"
                    f"persistence_location {tmp_path}/data/\nstore_max_size 2MB\n")
    out = subprocess.run([str(require_sluice_binary()), "check", "-c", str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "warning" not in out.stdout, out.stdout
    # Start-up says the same in the log.
    gw = Gateway(tmp_path / "gw", [], extra=["store_max_size 1000000GB"])
    gw.start()
    try:
        assert wait_until(lambda: gw.count_log(r"warning: .*store_max_size .* is more than the filesystem") > 0, 10), \
            gw.log_tail()
    finally:
        gw.stop()
    conf.write_text("store_min_free 95%\n")
    out = subprocess.run([str(require_sluice_binary()), "check", "-c", str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and ":1:" in out.stderr and "store_min_free" in out.stderr, out.stderr


def test_store_max_size_below_64MB_is_honoured(tmp_path):
    central, counter = start_dark_central(tmp_path)
    gw = Gateway(tmp_path / "gw", [BridgeSpec([central.port], extra=["queue_overflow drop_oldest"])],
                 extra=["store_max_size 4MB"])
    gw.start()
    try:
        pub = Publisher(gw.port)
        pub.run(range(20_000))  # ~8 MiB of records
        assert len(pub.acked) == 20_000
        size = (gw.data_dir / "sluice.db").stat().st_size
        stats = queue_stats(gw)
        print(f"sluice.db={size} stats={stats}")
        assert size <= 4 << 20, f"sluice.db grew to {size} bytes past store_max_size 4MB"
        assert stats.get("dropped.store_full", 0) > 0
    finally:
        gw.stop()
        counter.close()
        central.stop()


def test_bridge_in_message_on_a_full_disk_is_not_acknowledged_to_the_central(tmp_path, tmpfs):
    """A bridge `in` message for an offline persistent local subscriber while the disk is full: the
    gateway must not PUBACK the central (which would forget it); it closes the link, the central
    sends it again, and once there is room the message is kept and survives a restart."""
    central = Central(tmp_path / "central").start()
    spec = BridgeSpec([central.port], topics=['cmd/# in 1 devices/ gw1/'], restart_timeout="1 1")
    gw = Gateway(tmp_path / "gw", [spec], extra=["store_min_free 0"])
    tmpfs(gw.data_dir, "16m")
    gw.start()
    sub_id = uid("devsub")
    try:
        gw.wait_connected(0)
        sub = raw.RawClient(HOST, gw.port, timeout=10)
        sub.connect(sub_id, clean=False)
        sub.send(raw.subscribe([("devices/cmd/#", 1)], packet_id=1))
        sub.expect(raw.SUBACK)
        sub.send(raw.disconnect())
        sub.close()
        time.sleep(0.5)
        filler = gw.data_dir / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, timeout=60)
        connects = gw.connected_count()
        sender = Publisher(central.port, topic="gw1/cmd/valve")
        sender.run(range(20), timeout=30)
        assert len(sender.acked) == 20  # the central has them
        # Not kept, so not acknowledged: the gateway drops the link and the central resends.
        # (Bounded waits; what decides is whether the messages survive below.)
        refused = wait_until(lambda: gw.count_log(r"an in message could not be kept") > 0, 20, 0.2)
        filler.unlink()
        wait_until(lambda: gw.count_log(r"broker state saved again") > 0, 60, 0.2)
        wait_until(lambda: gw.connected_count() > connects, 60, 0.2)
        print(f"in rule: link closed for a message not kept: {refused}; reconnects {gw.connected_count() - connects}")
        time.sleep(3)  # the resent messages are kept and acknowledged
        gw.stop()
        gw.start()
        sub = raw.RawClient(HOST, gw.port, timeout=10)
        assert sub.connect(sub_id, clean=False).session_present
        got: set[int] = set()
        deadline = time.monotonic() + 30
        while got != set(range(20)) and time.monotonic() < deadline:
            try:
                packet = sub.read_packet(5)
            except TimeoutError:
                break
            if packet.ptype == raw.PUBLISH:
                got.add(int(packet.payload))
                if packet.qos:
                    sub.send(raw.ack(raw.PUBACK, packet.packet_id))
        sub.close()
        missing = sorted(set(range(20)) - got)
        assert not missing, f"messages the central handed over were lost: {missing}\n{gw.log_tail()}"
    finally:
        gw.stop()
        central.stop()


def test_qos2_resend_after_a_dropped_connection_is_kept_not_answered_as_a_duplicate(tmp_path, tmpfs):
    """A QoS 2 PUBLISH for the bridge whose connection drops before its append fails (full disk) was
    never kept: when the client resends it on its next connection it must not get a PUBREC (which
    would end its flow with the message lost), but be kept anew once there is room."""
    central, counter = start_dark_central(tmp_path)
    # A commit waits up to 200 ms for company: the connection is surely gone before the append fails.
    gw, _ = fill_gateway(tmp_path, tmpfs, central, "reject_new", ["store_min_free 0", "queue_commit_window 200"])
    gw.start()
    client_id, seq = uid("q2"), 777_777

    def send_once(dup: bool) -> list:
        """Connects, sends the PUBLISH, and returns what came back before the gateway closed or 3 s passed."""
        c = raw.RawClient(HOST, gw.port, timeout=10)
        assert c.connect(client_id, clean=False).reason == 0
        c.send(raw.publish("sensors/q2", payload(seq), qos=2, packet_id=7, dup=dup))
        got = []
        deadline = time.monotonic() + 3
        try:
            while time.monotonic() < deadline:
                got.append(c.read_packet(max(0.01, deadline - time.monotonic())))
                if got[-1].ptype == raw.PUBREC:
                    c.send(raw.ack(raw.PUBREL, 7))
                    got.append(c.expect(raw.PUBCOMP, 5))
                    break
        except (raw.Closed, TimeoutError):
            pass
        c.close()
        return got

    try:
        filler = gw.data_dir / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, timeout=60)
        first = raw.RawClient(HOST, gw.port, timeout=10)
        assert first.connect(client_id, clean=False).reason == 0
        first.send(raw.publish("sensors/q2", payload(seq), qos=2, packet_id=7))
        first.abort()  # gone before the append fails
        assert wait_until(lambda: gw.count_log(r"store (full|writes fail)") > 0, 10, 0.1), gw.log_tail()
        resent = send_once(dup=True)
        assert not any(p.ptype == raw.PUBREC for p in resent), \
            f"PUBREC for a message the full disk never kept: {resent}"

        filler.unlink()
        central.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.ptype == raw.PUBCOMP for p in send_once(dup=True)):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the resend was never acknowledged after the disk had room")
        assert wait_until(lambda: seq in counter.seqs(), 60, 0.2), f"central got {counter.seqs()[:10]}"
    finally:
        gw.stop()
        counter.close()
        central.stop()
