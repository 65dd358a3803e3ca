"""Bridge integration-test harness: a Sluice gateway plus Debian mosquitto central brokers.

Self-contained (does not use conftest.py). The gateway under test is always Sluice
($SLUICE_BIN, default <repo>/.build/debug/sluice); the central brokers are always Debian's
`mosquitto` (see docs toolchain.md "Debian's mosquitto as a test peer": `user root`,
`max_queued_messages 0`).

Counting at the central broker is done by `Counter`, a paho subscriber with a persistent
session (clean_session False, QoS 1) that is created BEFORE any traffic. Central brokers run
with `persistence true` and are stopped gracefully (SIGTERM), so that session and the
messages queued for it survive a central restart: nothing the central accepted is lost at the
central itself, and every loss or duplicate the tests see is the gateway's.

Every wait is bounded in time; every process started here is stopped by its own PID.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import port_listening

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", str(REPO / ".build" / "debug" / "sluice")))
HOST = "127.0.0.1"


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def require_sluice_binary() -> Path:
    if not SLUICE_BIN.is_file() or not os.access(SLUICE_BIN, os.X_OK):
        pytest.fail(f"Sluice binary not found at {SLUICE_BIN}. Build it (`swift build`) or set "
                    f"SLUICE_BIN.", pytrace=False)
    return SLUICE_BIN


# --------------------------------------------------------------------------- processes

class Proc:
    """A server process with a log file; started and stopped by PID."""

    name = "proc"

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = HOST
        self.conf_path = workdir / f"{self.name}.conf"
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self._logf = None
        self.conf_text = ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> "Proc":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.conf_path.write_text(self.conf_text)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._close_log()
                raise RuntimeError(f"{self.name} exited with {code} at start; log:\n{self.log()}\n"
                                   f"config:\n{self.conf_text}")
            if port_listening(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s; "
                           f"log:\n{self.log()}")

    def _close_log(self):
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            if sig != signal.SIGKILL:
                os.kill(p.pid, signal.SIGCONT)  # in case a test paused it
            p.send_signal(sig)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.proc = None
        self._close_log()
        # The port must be free again before a restart on the same port.
        wait_until(lambda: not port_listening(self.port), 5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets open but answers nothing."""
        assert self.alive()
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def count_log(self, pattern: str, flags=re.IGNORECASE) -> int:
        rx = re.compile(pattern, flags)
        return sum(1 for line in self.log().splitlines() if rx.search(line))


class Central(Proc):
    """Debian mosquitto as the central broker (persistent, unlimited queues, runs as root)."""

    name = "central"

    def __init__(self, workdir: Path, port: int | None = None, *,
                 users: dict[str, str] | None = None):
        super().__init__(workdir, port)
        lines = [f"listener {self.port} {HOST}",
                 "user root",
                 "max_queued_messages 0",
                 "persistence true",
                 f"persistence_location {workdir}/",
                 "autosave_interval 1",
                 "log_type error", "log_type warning", "log_type notice",
                 "log_type information",
                 "log_dest stderr"]
        if users:
            pw = workdir / "passwd"
            first = True
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if first else []) +
                               [str(pw), user, password], check=True, capture_output=True,
                               timeout=10)
                first = False
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf_text = "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        return ["mosquitto", "-c", str(self.conf_path)]


@dataclass
class BridgeSpec:
    addresses: list[int]
    topics: list[str] = field(default_factory=lambda: ['sensors/# out 1 "" gw1/'])
    name: str = "central"
    extra: list[str] = field(default_factory=list)
    restart_timeout: str = "1 2"
    keepalive: int = 5
    max_inflight: int = 100
    clientid: str | None = None


class Gateway(Proc):
    """The Sluice gateway under test: a local listener plus bridges."""

    name = "gateway"

    def __init__(self, workdir: Path, bridges: list[BridgeSpec], port: int | None = None,
                 extra: list[str] | None = None):
        super().__init__(workdir, port)
        self.data_dir = workdir / "data"
        lines = [f"listener {self.port} {HOST}",
                 "allow_anonymous true",
                 "persistence true",
                 f"persistence_location {self.data_dir}/",
                 "log_type all"]
        lines += extra or []
        # Each bridge's remote client id (its notification topic is $SYS/broker/connection/<id>/state).
        self.remote_clientids: dict[str, str] = {}
        for b in bridges:
            self.remote_clientids[b.name] = b.clientid or uid("gwbridge")
            lines.append(f"connection {b.name}")
            lines.append("address " + " ".join(f"{HOST}:{p}" for p in b.addresses))
            lines += [f"topic {t}" for t in b.topics]
            lines += [f"restart_timeout {b.restart_timeout}",
                      f"keepalive_interval {b.keepalive}",
                      f"bridge_max_inflight {b.max_inflight}",
                      f"remote_clientid {self.remote_clientids[b.name]}",
                      "cleansession false"]
            lines += b.extra
        self.conf_text = "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        return [str(require_sluice_binary()), "run", "-c", str(self.conf_path)]

    def connected_count(self) -> int:
        return self.count_log(r"bridge \S+ \(.*\): connected \(")

    def wait_connected(self, before: int = 0, timeout: float = 15.0) -> None:
        """Wait until the log shows more `bridge NAME (ADDRESS): connected (...)` lines than `before`."""
        if not wait_until(lambda: self.connected_count() > before, timeout, 0.05):
            raise AssertionError(f"bridge did not connect within {timeout}s; gateway log:\n"
                                 f"{self.log_tail()}")


# --------------------------------------------------------------------------- clients

class Client:
    """A paho 2.x client with its loop thread, automatic reconnect and a message log."""

    def __init__(self, port: int, client_id: str | None = None, *, clean: bool = True,
                 v5: bool = False, username: str | None = None, password: str | None = None,
                 max_inflight: int = 20):
        self.port = port
        self.client_id = client_id or uid("paho")
        self.v5 = v5
        self.clean = clean
        kw = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **kw)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.max_inflight_messages_set(max_inflight)
        self.c.max_queued_messages_set(0)
        self.c.reconnect_delay_set(1, 1)
        self.lock = threading.Lock()
        self.received: list[tuple[str, bytes, bool, bool]] = []  # topic, payload, dup, retain
        self.connects = 0
        self._connected = threading.Event()
        self._subacks: "queue.Queue" = queue.Queue()
        self.pubacks: dict[int, int] = {}  # mid -> reason code value
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            with self.lock:
                self.connects += 1
            self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.received.append((msg.topic, msg.payload, bool(msg.dup), bool(msg.retain)))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._subacks.put((mid, reason_codes))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.lock:
            self.pubacks[mid] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)

    def connect(self, timeout: float = 5.0) -> "Client":
        kw = {"keepalive": 30}
        if self.v5:
            kw["clean_start"] = self.clean
        self.c.connect(HOST, self.port, **kw)
        self.c.loop_start()
        if not self._connected.wait(timeout):
            raise AssertionError(f"{self.client_id}: no CONNACK from port {self.port} within {timeout}s")
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> None:
        rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe {topic}: {rc}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, codes = self._subacks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got == mid:
                for code in codes:
                    assert not code.is_failure, f"subscription to {topic} refused: {code}"
                return
        raise AssertionError(f"no SUBACK for {topic} within {timeout}s")

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False,
                timeout: float = 5.0):
        info = self.c.publish(topic, payload, qos, retain)
        if qos:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"publish to {topic} not acknowledged within {timeout}s"
        return info

    def messages(self, topic_prefix: str = "") -> list[tuple[str, bytes, bool, bool]]:
        with self.lock:
            return [m for m in self.received if m[0].startswith(topic_prefix)]

    def clear(self):
        with self.lock:
            self.received.clear()

    def close(self):
        try:
            if self.c.is_connected():
                self.c.disconnect()
        except Exception:
            pass
        try:
            self.c.loop_stop()
        except Exception:
            pass
        try:
            s = self.c.socket()
            if s is not None:
                s.close()
        except Exception:
            pass


class Counter(Client):
    """A persistent-session QoS 1 subscriber at a central broker counting numbered payloads.

    Must be created (and subscribed) before any traffic. Survives central restarts: paho
    reconnects by itself and the session (kept by the central's persistence) still holds the
    subscription and the messages queued meanwhile."""

    def __init__(self, port: int, topic: str = "#", client_id: str | None = None):
        super().__init__(port, client_id or uid("counter"), clean=False, max_inflight=100)
        self.topic = topic

    def start(self) -> "Counter":
        self.connect()
        self.subscribe(self.topic, 1)
        return self

    def seqs(self, topic: str | None = None) -> list[int]:
        """Sequence numbers in arrival order (only those on `topic`, if given), leaving out the
        central's own redeliveries to this subscriber (DUP set on a message already seen:
        central -> subscriber resend, not a gateway duplicate)."""
        out: list[int] = []
        seen: set[int] = set()
        with self.lock:
            msgs = list(self.received)
        for msg_topic, payload, dup, _retain in msgs:
            if topic is not None and msg_topic != topic:
                continue
            try:
                n = int(payload)
            except ValueError:
                continue
            if dup and n in seen:
                continue
            seen.add(n)
            out.append(n)
        return out

    def distinct(self) -> int:
        return len(set(self.seqs()))

    def wait_distinct(self, n: int, timeout: float) -> bool:
        return wait_until(lambda: self.distinct() >= n, timeout, 0.1)

    def settle(self, quiet: float = 1.0, cap: float = 10.0) -> None:
        """Wait until nothing more arrives for `quiet` seconds (bounded by `cap`)."""
        deadline = time.monotonic() + cap
        last = -1
        while time.monotonic() < deadline:
            with self.lock:
                n = len(self.received)
            if n == last:
                return
            last = n
            time.sleep(quiet)


# --------------------------------------------------------------------------- publishing

def mosq_pub_lines(port: int, topic: str, lines: list[str], qos: int = 1,
                   timeout: float = 120.0) -> None:
    """mosquitto_pub -l: one message per line; fails unless mosquitto_pub exits 0."""
    cmd = ["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", topic, "-q", str(qos), "-l",
           "-i", uid("mpub")]
    r = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}): {r.stderr}"


def publish_numbered(port: int, topic: str, first: int, last: int, *, timeout: float = 120.0,
                     max_inflight: int = 100) -> None:
    """Publish payloads first..last at QoS 1 with paho and wait until every one is PUBACKed."""
    c = Client(port, uid("pub"), max_inflight=max_inflight).connect()
    try:
        infos = [c.c.publish(topic, str(i), 1) for i in range(first, last + 1)]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        missing = [first + k for k, info in enumerate(infos) if not info.is_published()]
        assert not missing, (f"{len(missing)} of {len(infos)} publishes not acknowledged within "
                             f"{timeout}s (first: {missing[:5]})")
    finally:
        c.close()


# --------------------------------------------------------------------------- checking

@dataclass
class Delivery:
    expected: list[int]
    got: list[int]

    @property
    def missing(self) -> list[int]:
        s = set(self.got)
        return [n for n in self.expected if n not in s]

    @property
    def unexpected(self) -> list[int]:
        e = set(self.expected)
        return sorted({n for n in self.got if n not in e})

    @property
    def duplicates(self) -> int:
        return len(self.got) - len(set(self.got))

    @property
    def order_breaks(self) -> list[tuple[int, int]]:
        """Places where the first occurrences (duplicates ignored) do not follow FIFO order."""
        first: list[int] = []
        seen: set[int] = set()
        for n in self.got:
            if n not in seen:
                seen.add(n)
                first.append(n)
        return [(a, b) for a, b in zip(first, first[1:]) if b <= a]

    def duplicate_ranges(self) -> list[tuple[int, int]]:
        """Runs of consecutive sequence numbers that arrived more than once."""
        counts: dict[int, int] = {}
        for n in self.got:
            counts[n] = counts.get(n, 0) + 1
        dups = sorted(n for n, k in counts.items() if k > 1)
        runs: list[tuple[int, int]] = []
        for n in dups:
            if runs and n == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], n)
            else:
                runs.append((n, n))
        return runs

    def summary(self) -> str:
        m = self.missing
        return (f"expected {len(self.expected)} distinct, got {len(self.got)} messages "
                f"({len(set(self.got))} distinct); missing {len(m)} (first {m[:10]}); "
                f"unexpected {self.unexpected[:10]}; duplicates {self.duplicates} "
                f"(runs {self.duplicate_ranges()[:10]}); "
                f"order breaks {len(self.order_breaks)} (first {self.order_breaks[:5]})")


def assert_delivery(counter: Counter, expected: list[int], *, max_duplicates: int,
                    context: str = "", topic: str | None = None) -> Delivery:
    d = Delivery(expected, counter.seqs(topic))
    msg = d.summary() + (f"\n{context}" if context else "")
    assert not d.missing, "LOST messages: " + msg
    assert not d.unexpected, "unexpected messages: " + msg
    assert d.duplicates <= max_duplicates, f"too many duplicates (> {max_duplicates}): " + msg
    assert not d.order_breaks, "order not kept: " + msg
    return d


# --------------------------------------------------------------------------- fixture

class BridgeEnv:
    """Owns every process and client a test starts; tears them all down by PID."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.procs: list[Proc] = []
        self.clients: list[Client] = []

    def central(self, **kw) -> Central:
        c = Central(self.tmp / f"central{len(self.procs)}", **kw)
        self.procs.append(c)
        return c

    def gateway(self, bridges: list[BridgeSpec], **kw) -> Gateway:
        g = Gateway(self.tmp / f"gateway{len(self.procs)}", bridges, **kw)
        self.procs.append(g)
        return g

    def client(self, port: int, *args, connect: bool = True, **kw) -> Client:
        c = Client(port, *args, **kw)
        self.clients.append(c)
        return c.connect() if connect else c

    def counter(self, port: int, topic: str = "#") -> Counter:
        c = Counter(port, topic)
        self.clients.append(c)
        return c.start()

    def logs(self) -> str:
        out = []
        for p in self.procs:
            out.append(f"----- {p.name} ({p.workdir.name}) log tail -----\n{p.log_tail(40)}")
        return "\n".join(out)

    def close(self):
        for c in self.clients:
            c.close()
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                if p.proc is not None and p.proc.poll() is None:
                    p.proc.kill()


@pytest.fixture
def bridge_env(tmp_path):
    env = BridgeEnv(tmp_path)
    try:
        yield env
    finally:
        env.close()


def start_link(env: BridgeEnv, *, topics: list[str] | None = None, extra: list[str] | None = None,
               counter_topic: str = "gw1/sensors/#", max_inflight: int = 100,
               central_kw: dict | None = None):
    """Central up, a counter on it, a gateway bridged to it and connected.

    Returns (central, counter, gateway)."""
    central = env.central(**(central_kw or {})).start()
    counter = env.counter(central.port, counter_topic)
    spec = BridgeSpec([central.port], topics=topics or ['sensors/# out 1 "" gw1/'],
                      extra=extra or [], max_inflight=max_inflight)
    gw = env.gateway([spec]).start()
    gw.wait_connected()
    return central, counter, gw
