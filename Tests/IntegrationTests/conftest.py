"""Integration-test harness: runs the broker under test on a free loopback port.

The broker is chosen by SLUICE_TEST_BROKER:
  sluice (default)  runs $SLUICE_BIN (default <repo>/.build/debug/sluice) as `sluice run -c CONF`
  mosquitto         runs Debian's `mosquitto -c CONF` (the reference)
The generated config uses Mosquitto's syntax, which Sluice accepts too:
  listener PORT 127.0.0.1 / allow_anonymous true / persistence true /
  persistence_location TMPDIR/ (+ `user root` for mosquitto only) + per-test extra lines.

Run (one process, no xdist; ~2.5 minutes):
  python3 -m pytest Tests/IntegrationTests -q                                 # against Sluice
  SLUICE_TEST_BROKER=mosquitto python3 -m pytest Tests/IntegrationTests -q    # reference
  SLUICE_TEST_RUN_ALL=1 ...   also runs sluice_only/mosquitto_only tests (to see them fail)

Tests marked sluice_only check behaviour the issue demands where Mosquitto 2.0.11 differs
(each marker gives the reason; skipped with that reason against mosquitto).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqttraw

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BROKER_KIND = os.environ.get("SLUICE_TEST_BROKER", "sluice").strip().lower()
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", str(REPO / ".build" / "debug" / "sluice")))
HOST = "127.0.0.1"

if BROKER_KIND not in ("sluice", "mosquitto"):
    raise pytest.UsageError(f"SLUICE_TEST_BROKER must be 'sluice' or 'mosquitto', not {BROKER_KIND!r}")

IS_SLUICE = BROKER_KIND == "sluice"
IS_MOSQUITTO = BROKER_KIND == "mosquitto"


# --------------------------------------------------------------------------- markers

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sluice_only(reason): behaviour the issue demands that Mosquitto does differently")
    config.addinivalue_line("markers", "mosquitto_only(reason): behaviour checked only on Mosquitto")


def pytest_report_header(config):
    target = str(SLUICE_BIN) if IS_SLUICE else shutil.which("mosquitto")
    return f"broker under test: {BROKER_KIND} ({target})"


# SLUICE_TEST_RUN_ALL=1 runs sluice_only / mosquitto_only tests anyway (to see how the other
# broker fails them, e.g. to re-check that a sluice_only test can fail).
RUN_ALL = os.environ.get("SLUICE_TEST_RUN_ALL") == "1"


def pytest_runtest_setup(item):
    if RUN_ALL:
        return
    m = item.get_closest_marker("sluice_only")
    if m is not None and not IS_SLUICE:
        why = m.kwargs.get("reason") or (m.args[0] if m.args else "Sluice-specific behaviour")
        pytest.skip(f"sluice_only: {why}")
    m = item.get_closest_marker("mosquitto_only")
    if m is not None and not IS_MOSQUITTO:
        why = m.kwargs.get("reason") or (m.args[0] if m.args else "Mosquitto-specific behaviour")
        pytest.skip(f"mosquitto_only: {why}")


# --------------------------------------------------------------------------- broker

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def require_sluice_binary() -> Path:
    if not SLUICE_BIN.is_file() or not os.access(SLUICE_BIN, os.X_OK):
        pytest.fail(
            f"Sluice binary not found at {SLUICE_BIN}. Build it (`swift build`) or set SLUICE_BIN, "
            f"or run against the reference with SLUICE_TEST_BROKER=mosquitto.", pytrace=False)
    return SLUICE_BIN


def broker_command(conf_path: Path) -> list[str]:
    if IS_SLUICE:
        return [str(require_sluice_binary()), "run", "-c", str(conf_path)]
    return ["mosquitto", "-c", str(conf_path)]


def port_listening(port: int) -> bool:
    """True once a socket LISTENs on 127.0.0.1:port.

    Read from /proc/net/tcp rather than probing with a connection: a probe that connects and
    closes before CONNECT is itself a client event (Mosquitto 2.0.11 even miscounts it against
    max_connections)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":
                    return True
        return False
    except OSError:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False


class Broker:
    def __init__(self, workdir: Path, conf_text_extra: str = "", *, port: int | None = None,
                 persistence: bool = True, start_timeout: float = 10.0):
        self.host = HOST
        self.port = port or free_port()
        self.workdir = workdir
        self.conf_path = workdir / "broker.conf"
        self.log_path = workdir / "broker.log"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self._logf = None
        lines = [f"listener {self.port} {HOST}", "allow_anonymous true"]
        if IS_MOSQUITTO:
            lines.append("user root")  # tests run as root; see toolchain.md
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/"]
        self.conf_text = "\n".join(lines) + "\n" + conf_text_extra.strip("\n") + "\n"
        self.conf_path.write_text(self.conf_text)

    def start(self) -> "Broker":
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(broker_command(self.conf_path), stdout=self._logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} at start; log:\n"
                                   f"{self.log()}\nconfig:\n{self.conf_text}")
            if self._listening():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker did not accept connections on {self.port} within "
                           f"{self.start_timeout}s; log:\n{self.log()}")

    def _listening(self) -> bool:
        return port_listening(self.port)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> "Broker":
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def start_broker(tmp_path):
    """Factory: start_broker(conf_text_extra="", **kw) -> running Broker (stopped at teardown)."""
    started: list[Broker] = []

    def _start(conf_text_extra: str = "", **kw) -> Broker:
        d = tmp_path / f"broker{len(started)}"
        d.mkdir()
        b = Broker(d, conf_text_extra, **kw)
        started.append(b)
        return b.start()

    yield _start
    for b in started:
        b.stop()


@pytest.fixture
def broker(start_broker) -> Broker:
    """A broker with the default config."""
    return start_broker()


# --------------------------------------------------------------------------- raw sockets

@pytest.fixture
def raw(broker):
    """Factory for raw MQTT sockets to `broker`: raw(version=4) -> RawClient."""
    socks: list[mqttraw.RawClient] = []

    def _mk(version: int = 4, target: Broker | None = None, timeout: float = 3.0):
        b = target or broker
        c = mqttraw.RawClient(b.host, b.port, version=version, timeout=timeout)
        socks.append(c)
        return c

    yield _mk
    for c in socks:
        c.close()


def assert_serving(b: Broker, version: int = 4) -> None:
    """The broker still serves: a fresh client connects, subscribes and gets its own message."""
    assert b.alive(), f"broker process died; log:\n{b.log()}"
    with mqttraw.RawClient(b.host, b.port, version=version) as c:
        ack = c.connect(uid("alive"), version=version)
        assert ack.reason == 0
        topic = f"alive/{uuid.uuid4().hex[:8]}"
        c.send(mqttraw.subscribe([(topic, 0)], version=version))
        c.expect(mqttraw.SUBACK)
        c.send(mqttraw.publish(topic, b"ping", version=version))
        p = c.expect(mqttraw.PUBLISH)
        assert p.topic == topic and p.payload == b"ping"


# --------------------------------------------------------------------------- paho

def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def rss_bytes(pid: int) -> int:
    """A process's resident set (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Collector:
    """Collects paho messages thread-safely, with bounded waits."""

    def __init__(self):
        self.q: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.messages: list[mqtt.MQTTMessage] = []

    def on_message(self, client, userdata, msg):
        self.q.put(msg)

    def _drain(self):
        while True:
            try:
                self.messages.append(self.q.get_nowait())
            except queue.Empty:
                return

    def wait_for(self, n: int, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        """Wait until at least n messages arrived (or timeout); return all so far."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self.messages.append(self.q.get(timeout=remaining))
            except queue.Empty:
                break
        self._drain()
        return list(self.messages)

    def settle(self, quiet: float = 0.5) -> list[mqtt.MQTTMessage]:
        """Wait until nothing more arrives for `quiet` seconds (bounded to 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.q.get(timeout=quiet))
            except queue.Empty:
                break
        self._drain()
        return list(self.messages)

    def payloads(self) -> list[bytes]:
        self._drain()
        return [m.payload for m in self.messages]


class PahoClient:
    """A paho 2.x client with loop thread, connect-and-wait and a message collector."""

    def __init__(self, b: Broker, client_id: str | None = None, *, v5: bool = False,
                 clean: bool = True, properties: Properties | None = None, keepalive: int = 30,
                 will: tuple | None = None):
        self.broker = b
        self.v5 = v5
        self.client_id = uid("paho") if client_id is None else client_id
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kw = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=proto, **kw)
        self.clean = clean
        self.connect_props = properties
        self.keepalive = keepalive
        self.collector = Collector()
        self.c.on_message = self.collector.on_message
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self.connack: dict = {}
        self.disconnect_reason = None
        self.disconnect_props = None
        self._subacks: "queue.Queue" = queue.Queue()
        self._pubacks: dict[int, threading.Event] = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        if will is not None:
            topic, payload, qos, retain, *rest = will
            self.c.will_set(topic, payload, qos, retain, properties=rest[0] if rest else None)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = {"flags": flags, "reason": reason_code, "properties": properties}
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code
        self.disconnect_props = properties
        self._disconnected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._subacks.put((mid, reason_codes))

    def connect(self, timeout: float = 5.0) -> "PahoClient":
        self._connected.clear()
        self._disconnected.clear()
        kw = {"keepalive": self.keepalive}
        if self.v5:
            kw["clean_start"] = self.clean
            if self.connect_props is not None:
                kw["properties"] = self.connect_props
        self.c.connect(self.broker.host, self.broker.port, **kw)
        self.c.loop_start()
        if not self._connected.wait(timeout):
            self.c.loop_stop()
            raise AssertionError(f"no CONNACK within {timeout}s")
        rc = self.connack["reason"]
        assert not rc.is_failure, f"connect refused: {rc}"
        return self

    @property
    def session_present(self) -> bool:
        return bool(self.connack["flags"].session_present)

    def subscribe(self, topic, qos: int = 0, options=None, properties=None,
                  timeout: float = 5.0):
        if self.v5:
            opts = options or mqtt.SubscribeOptions(qos=qos)
            rc, mid = self.c.subscribe(topic, options=opts, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got_mid, codes = self._subacks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got_mid == mid:
                for code in codes:
                    assert not code.is_failure, f"subscription refused: {code}"
                return codes
        raise AssertionError(f"no SUBACK within {timeout}s")

    def publish(self, topic, payload=b"", qos: int = 0, retain: bool = False,
                properties=None, timeout: float = 5.0):
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        if qos:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"publish to {topic} not acknowledged within {timeout}s"
        return info

    def disconnect(self):
        try:
            self.c.disconnect()
        finally:
            self._disconnected.wait(2)
            self.c.loop_stop()

    def wait_disconnected(self, timeout: float) -> bool:
        return self._disconnected.wait(timeout)

    def kill_socket(self):
        """Abnormal disconnect: shut the TCP socket without sending DISCONNECT."""
        sock = self.c.socket()
        self.c.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        try:
            if self.c.is_connected():
                self.c.disconnect()  # also wakes the loop thread at once
            self.c.loop_stop()
            sock = self.c.socket()
            if sock is not None:
                sock.close()
        except Exception:
            pass


@pytest.fixture
def paho_client(broker):
    """Factory: paho_client(client_id=None, v5=False, clean=True, ..., connect=True, target=None)."""
    made: list[PahoClient] = []

    def _mk(client_id=None, *, v5=False, connect=True, target: Broker | None = None, **kw):
        pc = PahoClient(target or broker, client_id, v5=v5, **kw)
        made.append(pc)
        if connect:
            pc.connect()
        return pc

    yield _mk
    for pc in made:
        pc.close()


def props(packet_type, **values) -> Properties:
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


PUBLISH_PROPS = lambda **kw: props(PacketTypes.PUBLISH, **kw)  # noqa: E731
CONNECT_PROPS = lambda **kw: props(PacketTypes.CONNECT, **kw)  # noqa: E731
SUBSCRIBE_PROPS = lambda **kw: props(PacketTypes.SUBSCRIBE, **kw)  # noqa: E731
WILL_PROPS = lambda **kw: props(PacketTypes.WILLMESSAGE, **kw)  # noqa: E731


# --------------------------------------------------------------------------- mosquitto_pub/sub

def mosq_pub(b: Broker, topic: str, *args: str, message: str | None = None, version: str = "311",
             stdin: str | None = None, timeout: float = 10.0) -> subprocess.CompletedProcess:
    cmd = ["mosquitto_pub", "-h", b.host, "-p", str(b.port), "-V", version, "-t", topic]
    if message is not None:
        cmd += ["-m", message]
    cmd += list(args)
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}): {r.stderr}"
    return r


class SubProcess:
    """A background mosquitto_sub: started, then waited for with a bound."""

    def __init__(self, b: Broker, topics, *args: str, count: int | None = None,
                 wait_s: int = 5, version: str = "311"):
        cmd = ["mosquitto_sub", "-h", b.host, "-p", str(b.port), "-V", version]
        for t in ([topics] if isinstance(topics, str) else topics):
            cmd += ["-t", t]
        if count is not None:
            cmd += ["-C", str(count)]
        cmd += ["-W", str(wait_s)] + list(args)
        self.cmd = cmd
        self.wait_s = wait_s
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def result(self) -> tuple[list[str], int, str]:
        try:
            out, err = self.proc.communicate(timeout=self.wait_s + 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        return out.splitlines(), self.proc.returncode, err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)


@pytest.fixture
def mosq_sub(broker):
    """Factory for background mosquitto_sub processes (all stopped at teardown)."""
    procs: list[SubProcess] = []

    def _mk(topics, *args, target: Broker | None = None, **kw) -> SubProcess:
        sp = SubProcess(target or broker, topics, *args, **kw)
        procs.append(sp)
        return sp

    yield _mk
    for sp in procs:
        sp.stop()


def sub_ready(delay: float = 0.5) -> None:
    """Give a background mosquitto_sub time to CONNECT and SUBSCRIBE (we cannot see its SUBACK).

    Tests that depend on it count messages, so a too-short delay shows up as a failure, not a
    false pass."""
    time.sleep(delay)
