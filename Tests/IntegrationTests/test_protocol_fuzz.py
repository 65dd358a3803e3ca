"""Protocol-level fuzzing against a running broker (issue 6, part 1).

Several connections at once send seeded random sequences of valid and invalid packets in every
version (a valid CONNECT then mutated packets, random bytes, truncated frames, packets in the wrong
order, oversize remaining lengths, second CONNECTs, server-only packets) built with mqttraw.py.
Meanwhile control clients (3.1.1 and 5) on their own connections keep publishing to themselves at
QoS 0 and 1, and every round trip must complete within a bound. At the end the broker process is
alive, serves new clients in every version, and its log shows no crash.

Seeded and bounded: the seed is printed (override with SLUICE_FUZZ_SEED=N to replay a run), the run
lasts SLUICE_PROTOCOL_FUZZ_SECONDS (default 40, at most 60) and at most MAX_CONNECTIONS connections.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import threading
import time
import uuid

import mqttraw as m
from conftest import assert_serving

SECONDS = min(60.0, float(os.environ.get("SLUICE_PROTOCOL_FUZZ_SECONDS", "40")))
SEED = int(os.environ.get("SLUICE_FUZZ_SEED", str(random.SystemRandom().randrange(1 << 32))))
WORKERS = 6
MAX_CONNECTIONS = 10000
MAX_PACKETS_PER_CONNECTION = 40
CLIENT_IDS = 40
# A control round trip (PUBLISH → echo, plus PUBACK at QoS 1) must finish within this many seconds.
# Generous: the CI machine is shared, but a broker wedged by a fuzz connection misses it by far.
ROUND_TRIP_BOUND = 5.0
CRASH_PATTERNS = re.compile(
    r"Fatal error|Precondition failed|Assertion failed|Fatal access conflict|Segmentation fault|"
    r"Illegal instruction|\*\*\* Signal \d+|💣|Program crashed|Crash at|Thread \d+ crashed",
    re.IGNORECASE)

FILTERS = ["fz/a", "fz/b/c", "fz/+", "fz/#", "#", "+/+", "$SYS/#", "a//b", "fz/\u00e9", "$share/g/fz/a", "x" * 300]
BAD_FILTERS = ["", "fz/\x00nul", "fz/#/a", "fz+", "$share/g", "$share//a", "a/\ud800".encode("utf-8", "surrogatepass")]


# --------------------------------------------------------------------------- packet generators

def subscription(rng: random.Random, version: int, bad: bool) -> tuple[str | bytes, int]:
    """A topic filter and its options byte; valid unless `bad`."""
    if bad:
        return rng.choice(BAD_FILTERS), rng.randrange(256)
    topic = rng.choice(FILTERS)
    opts = rng.randrange(3)
    if version == 5:
        opts |= rng.randrange(3) << 4 | rng.randrange(2) << 3  # retain handling, retain as published
        if not topic.startswith("$share/") and rng.random() < 0.3:
            opts |= 0x04  # no local (a protocol error on a shared subscription)
    return topic, opts


def valid_connect(rng: random.Random, version: int, client_id: str) -> bytes:
    will = None
    if rng.random() < 0.3:
        will = ("fz/will", b"bye", rng.randrange(3), rng.random() < 0.5)
        if version == 5:
            will = will + ([(0x18, rng.randrange(3))],)
    props = [(m.P_SESSION_EXPIRY, rng.choice([0, 5])), (m.P_RECEIVE_MAXIMUM, rng.randrange(1, 50))] \
        if version == 5 else None
    return m.connect(client_id, version=version, clean=rng.random() < 0.8, keepalive=rng.choice([0, 5, 60]),
                     properties=props, will=will)


def valid_packet(rng: random.Random, version: int, bad_filters: bool = False) -> bytes:
    """One client-to-server packet that is valid on its own (but maybe not in this order); with
    `bad_filters`, SUBSCRIBE and UNSUBSCRIBE may carry invalid topic filters or options."""
    pid = rng.randrange(1, 65536)
    kind = rng.randrange(10)
    if kind <= 3:
        props = None
        if version == 5 and rng.random() < 0.5:
            props = rng.choice([[(m.P_TOPIC_ALIAS, rng.randrange(1, 12))], [(m.P_MESSAGE_EXPIRY, 1)],
                                [(0x26, ("k", "v"))], [(m.P_PAYLOAD_FORMAT, 1)]])
        topic = rng.choice(["fz/a", "fz/b/c", "fz/retained"])
        return m.publish(topic, rng.randbytes(rng.randrange(0, 64)), qos=rng.randrange(3),
                         retain=rng.random() < 0.2, packet_id=pid, version=version, properties=props)
    if kind == 4:
        subs = [subscription(rng, version, bad_filters and rng.random() < 0.3) for _ in range(rng.randrange(1, 4))]
        return m.subscribe(subs, packet_id=pid, version=version,
                           properties=[(0x0B, rng.randrange(1, 1000))] if version == 5 and rng.random() < 0.3 else None)
    if kind == 5:
        topic = subscription(rng, version, bad_filters and rng.random() < 0.3)[0]
        body = struct.pack("!H", pid) + (m.props([]) if version == 5 else b"") + m.mqtt_str(topic)
        return m.packet(m.UNSUBSCRIBE, 2, body)
    if kind == 6:
        return m.ack(rng.choice([m.PUBACK, m.PUBREC, m.PUBREL, m.PUBCOMP]), pid)
    if kind == 7:
        return m.PINGREQ_BYTES
    if kind == 8 and version == 5:
        return m.packet(m.AUTH, 0, bytes([0x18]) + m.props([(0x15, "none")]))
    return m.disconnect(version, rng.choice([0, 0x04]) if version == 5 else 0)


def server_only_packet(rng: random.Random, version: int) -> bytes:
    """Packets only a server sends: CONNACK, SUBACK, UNSUBACK, PINGRESP."""
    pid = struct.pack("!H", rng.randrange(1, 65536))
    return rng.choice([
        m.packet(m.CONNACK, 0, b"\x00\x00" + (m.props([]) if version == 5 else b"")),
        m.packet(m.SUBACK, 0, pid + (m.props([]) if version == 5 else b"") + b"\x01"),
        m.packet(m.UNSUBACK, 0, pid),
        m.packet(m.PINGRESP, 0, b""),
    ])


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(7)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[i] = rng.randrange(256)
        elif op == 2 and len(b) > 1:
            del b[i]
        elif op == 3:
            b.insert(i, rng.randrange(256))
        elif op == 4 and len(b) > 2:
            b = b[:rng.randrange(1, len(b))]  # truncated frame
        elif op == 5 and b:
            b[0] = (rng.randrange(16) << 4) | rng.randrange(16)  # any type, any flags
        elif op == 6 and len(b) > 1:
            # Claim a different (often huge) remaining length.
            b[1:2] = m.varint(rng.choice([0, 1, 127, 128, 16383, 16384, 268435455]))
    return bytes(b)


def oversize_header(rng: random.Random) -> bytes:
    return rng.choice([
        bytes([0x30, 0xFF, 0xFF, 0xFF, 0x7F]),          # largest legal remaining length
        bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),    # five length bytes
        bytes([0x10, 0x80, 0x80, 0x80, 0x00]),          # overlong zero
        bytes([0x82, 0xFF, 0xFF, 0x03]) + b"\x00" * 64,
    ])


# --------------------------------------------------------------------------- the fuzz connections

class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.packets = 0
        self.connacks = 0
        self.closed_by_broker = 0
        self.scenarios: dict[str, int] = {}
        self.errors: list[str] = []

    def add(self, **kw) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def scenario(self, name: str) -> None:
        with self.lock:
            self.scenarios[name] = self.scenarios.get(name, 0) + 1


def drain(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """Reads what the broker sends for up to `seconds`; returns (bytes, closed_by_broker)."""
    got = b""
    deadline = time.monotonic() + seconds
    while len(got) < 1 << 20:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return got, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return got, False
        except OSError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


def fuzz_connection(rng: random.Random, port: int, n: int, stats: Stats) -> None:
    version = rng.choice([3, 4, 5])
    scenario = rng.choice(["mutated", "mutated", "valid-session", "random-bytes", "truncated",
                           "wrong-order", "oversize"])
    stats.scenario(scenario)
    sends: list[bytes] = []
    # A pool of client identifiers: sessions are taken over and resumed, and their number is bounded.
    client_id = f"fz-{rng.randrange(CLIENT_IDS)}"
    if scenario == "random-bytes":
        sends = [rng.randbytes(rng.randrange(1, 200)) for _ in range(rng.randrange(1, 4))]
    elif scenario == "oversize":
        sends = [valid_connect(rng, version, client_id)] if rng.random() < 0.7 else []
        sends.append(oversize_header(rng))
    elif scenario == "wrong-order":
        # Something before CONNECT, or a second CONNECT, or server-only packets after it.
        first = rng.choice(["packet-first", "double-connect", "server-packets"])
        if first == "packet-first":
            sends = [valid_packet(rng, version), valid_connect(rng, version, client_id)]
        elif first == "double-connect":
            sends = [valid_connect(rng, version, client_id), valid_connect(rng, version, client_id)]
        else:
            sends = [valid_connect(rng, version, client_id)] + [
                server_only_packet(rng, version) for _ in range(rng.randrange(1, 4))]
    else:
        sends = [valid_connect(rng, version, client_id)]
        count = rng.randrange(1, MAX_PACKETS_PER_CONNECTION)
        for _ in range(count):
            p = valid_packet(rng, version, bad_filters=scenario == "mutated")
            if scenario == "mutated" and rng.random() < 0.5:
                p = mutate(rng, p)
            sends.append(p)
        if scenario == "truncated":
            sends.append(mutate(rng, valid_packet(rng, version))[: rng.randrange(1, 4)])
    if scenario == "mutated" and rng.random() < 0.2:
        sends[0] = mutate(rng, sends[0])  # a damaged CONNECT
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    except OSError as e:
        stats.errors.append(f"connection {n} ({scenario}) refused: {e}")
        return
    stats.add(connections=1)
    closed = False
    try:
        # Send in random chunks so the broker also sees split and coalesced frames.
        data = b"".join(sends)
        pos = 0
        while pos < len(data) and not closed:
            step = rng.choice([1, 2, 7, 64, 1024, len(data)])
            try:
                sock.sendall(data[pos:pos + step])
            except OSError:
                closed = True
                break
            pos += step
            if rng.random() < 0.1:
                got, closed = drain(sock, 0.02)
                if got[:1] == bytes([0x20]):
                    stats.add(connacks=1)
        stats.add(packets=len(sends))
        if not closed:
            got, closed = drain(sock, rng.choice([0.0, 0.05, 0.2]))
            if got[:1] == bytes([0x20]):
                stats.add(connacks=1)
    finally:
        if closed:
            stats.add(closed_by_broker=1)
        if rng.random() < 0.3:
            try:  # RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        sock.close()


def fuzz_worker(worker: int, port: int, deadline: float, counter, stats: Stats) -> None:
    rng = random.Random(SEED * 1000 + worker)
    while time.monotonic() < deadline:
        n = counter()
        if n is None:
            return
        try:
            fuzz_connection(rng, port, n, stats)
        except Exception as e:  # noqa: BLE001 - a harness bug must fail the test, not stop silently
            stats.errors.append(f"worker {worker} connection {n}: {type(e).__name__}: {e}")
            return


# --------------------------------------------------------------------------- the control clients

def late_arrival(c: m.RawClient, payload: bytes, started: float) -> str:
    """After a missed bound: does the message still come (a stall) or not at all (a loss)?"""
    while time.monotonic() - started < 30:
        try:
            p = c.read_packet(1.0)
        except TimeoutError:
            continue
        except (m.Closed, OSError) as e:
            return f"then the connection ended ({type(e).__name__})"
        if p.ptype == m.PUBLISH and p.payload == payload:
            return f"the echo came after {time.monotonic() - started:.1f}s"
    return "no echo within 30s"


def control_client(version: int, port: int, stop: threading.Event, results: dict) -> None:
    """Publishes to its own topic at QoS 0 and 1 and checks each message comes back in time."""
    latencies: list[float] = []
    failures: list[str] = []
    results[version] = (latencies, failures)
    topic = f"control/{uuid.uuid4().hex[:10]}"
    try:
        c = m.RawClient("127.0.0.1", port, version=version, timeout=ROUND_TRIP_BOUND)
        ack = c.connect(f"control-{version}-{uuid.uuid4().hex[:8]}", version=version, keepalive=60)
        assert ack.reason == 0, ack
        c.send(m.subscribe([(topic, 1)], packet_id=1, version=version))
        c.expect(m.SUBACK)
    except Exception as e:  # noqa: BLE001
        failures.append(f"control {version} could not start: {type(e).__name__}: {e}")
        return
    seq = 0
    with c:
        while not stop.is_set() and seq < 5000:
            seq += 1
            qos = seq % 2
            payload = f"{version}:{seq}".encode()
            started = time.monotonic()
            deadline = started + ROUND_TRIP_BOUND
            try:
                c.send(m.publish(topic, payload, qos=qos, packet_id=seq % 65535 + 1, version=version))
                echoed, acked = False, qos == 0
                while not (echoed and acked):
                    p = c.read_packet(max(0.001, deadline - time.monotonic()))
                    if p.ptype == m.PUBLISH:
                        if p.qos == 1:
                            c.send(m.ack(m.PUBACK, p.packet_id))
                        if p.payload == payload:
                            echoed = True
                    elif p.ptype == m.PUBACK and p.packet_id == seq % 65535 + 1:
                        acked = True
            except (TimeoutError, m.Closed, OSError) as e:
                failures.append(f"control {version} message {seq} (QoS {qos}) failed after "
                                f"{time.monotonic() - started:.2f}s: {type(e).__name__} "
                                f"(echoed {echoed}, acknowledged {acked}); {late_arrival(c, payload, started)}")
                return
            latencies.append(time.monotonic() - started)
            time.sleep(0.02)


# --------------------------------------------------------------------------- the test

def test_protocol_fuzz_broker_stays_up_and_serves(start_broker):
    print(f"\nprotocol fuzz: seed {SEED} (replay with SLUICE_FUZZ_SEED={SEED}), {SECONDS:.0f}s, "
          f"{WORKERS} workers")
    broker = start_broker()
    stats = Stats()
    lock = threading.Lock()
    issued = [0]

    def counter():
        with lock:
            if issued[0] >= MAX_CONNECTIONS:
                return None
            issued[0] += 1
            return issued[0]

    stop = threading.Event()
    results: dict = {}
    controls = [threading.Thread(target=control_client, args=(v, broker.port, stop, results), daemon=True)
                for v in (4, 5)]
    for t in controls:
        t.start()
    started = time.monotonic()
    deadline = started + SECONDS
    workers = [threading.Thread(target=fuzz_worker, args=(w, broker.port, deadline, counter, stats), daemon=True)
               for w in range(WORKERS)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=SECONDS + 30)
    stop.set()
    for t in controls:
        t.join(timeout=ROUND_TRIP_BOUND + 5)
    elapsed = time.monotonic() - started

    assert not any(t.is_alive() for t in workers + controls), "a fuzz or control thread hung"
    print(f"protocol fuzz: {stats.connections} connections, {stats.packets} packets in {elapsed:.1f}s; "
          f"{stats.connacks} CONNACKs seen, {stats.closed_by_broker} closed by the broker; "
          f"scenarios {dict(sorted(stats.scenarios.items()))}")
    for version, (latencies, failures) in sorted(results.items()):
        if latencies:
            print(f"protocol fuzz: control {version}: {len(latencies)} round trips, max "
                  f"{max(latencies) * 1000:.0f} ms, median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms")
    assert not stats.errors, stats.errors[:5]
    assert broker.alive(), f"broker died (seed {SEED}); log:\n{broker.log()[-4000:]}"
    for version, (latencies, failures) in sorted(results.items()):
        assert not failures, f"seed {SEED}: {failures}"
        assert len(latencies) >= 20, f"control {version} made only {len(latencies)} round trips"
    # The fuzzing did something: many connections, some accepted, some rejected.
    assert stats.connections >= 50, stats.connections
    assert stats.connacks > 0 and stats.closed_by_broker > 0
    # Still serving new clients in every version, and no crash was logged.
    for version in (3, 4, 5):
        assert_serving(broker, version)
    crash = CRASH_PATTERNS.search(broker.log())
    assert crash is None, f"seed {SEED}: crash in the log: {crash.group(0)}\n{broker.log()[-4000:]}"
