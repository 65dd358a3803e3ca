"""systemd integration of the running binary: sd_notify READY/WATCHDOG/STOPPING, SIGHUP reload."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", str(REPO / ".build" / "debug" / "sluice")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def receive_all(sock, seconds: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
    return got


def start(conf: Path, env: dict, log: Path) -> subprocess.Popen:
    if not SLUICE_BIN.exists():
        pytest.fail(f"sluice binary not found at {SLUICE_BIN}; build it first", pytrace=False)
    return subprocess.Popen([str(SLUICE_BIN), "run", "-c", str(conf)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, **env})


def test_sd_notify_ready_watchdog_and_stopping(tmp_path, notify_socket):
    path, sock = notify_socket
    port = free_port()
    conf = tmp_path / "gw.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    log = tmp_path / "sluice.log"
    proc = start(conf, {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}, log)
    try:
        messages = receive_all(sock, 2.5)
        assert "READY=1" in messages, (messages, log.read_text())
        # WATCHDOG_USEC=1s: pings every 0.5 s from the broker loop.
        assert messages.count("WATCHDOG=1") >= 3, messages
        # READY comes after the listener is bound: a client can connect at once.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()
        assert "STOPPING=1" in receive_all(sock, 0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sighup_reloads_bridge_rules_and_keeps_running_on_a_broken_file(tmp_path):
    port, central = free_port(), free_port()
    conf = tmp_path / "gw.conf"
    base = (f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence_location {tmp_path}/data/\n"
            f"connection central\naddress 127.0.0.1:{central}\nrestart_timeout 1 2\n")
    conf.write_text(base + "topic a/# out 1\n")
    log = tmp_path / "sluice.log"
    proc = start(conf, {}, log)
    try:
        wait_for(lambda: "listening" in log.read_text(), 10, "listening")
        conf.write_text(base + "topic a/# out 1\ntopic b/# out 1\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), 5, "reload")
        # b/x now matches an out rule: it lands in the durable queue.
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "b/x", "-m", "1", "-q", "1"], check=True, timeout=10)
        stats = subprocess.run([str(SLUICE_BIN), "queue", "stats", "-c", str(conf), "central"],
                               capture_output=True, text=True, timeout=10)
        assert "depth=1" in stats.stdout, stats
        conf.write_text(base + "topic a/# sideways 1\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in log.read_text(), 5, "reload failure")
        assert "gw.conf:7" in log.read_text()
        assert proc.poll() is None, "a broken reload must not stop the gateway"
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "a/x", "-m", "2", "-q", "1"], check=True, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scrape(port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def test_metrics_and_health_endpoints_follow_traffic(tmp_path):
    port, metrics_port, central = free_port(), free_port(), free_port()
    conf = tmp_path / "gw.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence_location {tmp_path}/data/\n"
                    f"metrics_listener {metrics_port} 127.0.0.1\n"
                    f"connection central\naddress 127.0.0.1:{central}\nrestart_timeout 1 2\ntopic sensors/# out 1\n")
    log = tmp_path / "sluice.log"
    proc = start(conf, {}, log)
    try:
        wait_for(lambda: "metrics listening" in log.read_text(), 10, "metrics listener")
        status, before = scrape(metrics_port, "/metrics")
        assert status == 200
        assert metric(before, 'sluice_bridge_queue_depth{bridge="central"}') == 0
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "sensors/t", "-l", "-q", "1"],
                       input="1\n2\n3\n", text=True, check=True, timeout=10)
        _, after = scrape(metrics_port, "/metrics")
        assert metric(after, 'sluice_bridge_queue_depth{bridge="central"}') == 3
        received = lambda text: sum(metric(text, f'sluice_publish_received_total{{qos="{q}"}}') for q in range(3))
        assert received(after) == received(before) + 3
        assert metric(after, 'sluice_bridge_connected{bridge="central"}') == 0
        assert metric(after, 'sluice_publish_received_total{qos="1"}') >= 3
        assert metric(after, "sluice_received_bytes_total") > metric(before, "sluice_received_bytes_total")
        assert metric(after, "sluice_sent_bytes_total") > 0
        # The three QoS 1 messages were committed to the bridge queue before their PUBACKs: the store's
        # commit counters move (each commit holds at least one operation).
        assert metric(after, "sluice_store_commits_total") > metric(before, "sluice_store_commits_total")
        assert metric(after, "sluice_store_operations_total") >= metric(after, "sluice_store_commits_total")
        # Flash wear (issue 15): two device flushes per commit, and the bytes the kernel wrote for the process
        # (the store directory is on a real filesystem here; tmpfs would count nothing).
        assert metric(after, "sluice_store_syncs_total") == 2 * metric(after, "sluice_store_commits_total")
        assert metric(after, "sluice_store_bytes_written_total") > metric(before, "sluice_store_bytes_written_total")
        status, health = scrape(metrics_port, "/healthz")
        assert status == 200 and "store: writable" in health and "bridge central: disconnected" in health
        assert scrape(metrics_port, "/nope")[0] == 404
        # An HTTP/1.0 client (no keep-alive) gets the response and then the end of the stream.
        import socket
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as raw:
            raw.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := raw.recv(4096):  # ends at the server's close; a timeout fails the test
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"connection: close" in data.lower(), data[:200]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
