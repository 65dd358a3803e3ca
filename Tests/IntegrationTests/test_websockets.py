"""MQTT over WebSockets listeners (`listener PORT` + `protocol websockets`, plain and TLS).

Real peers: paho-mqtt with transport="websockets" (and over TLS), mosquitto_pub/sub on the same
broker's TCP listener, and a hand-written WebSocket client (wsraw.py) that frames MQTT bytes at
odd boundaries, fragments messages, sends control frames and bad frames.
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

import mqttraw
import wsraw
from conftest import (HOST, REPO, Collector, SubProcess, assert_serving, free_port, mosq_pub,
                      require_sluice_binary, uid)

TLS = REPO / "fixtures" / "tls"


def wait_listening(port: int, timeout: float = 5.0) -> None:
    """The second listener binds just after the first one the harness waits for. Any address
    counts: Mosquitto's websockets listener binds the IPv6 wildcard."""
    suffix = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
            if any(row[1].endswith(suffix) and row[3] == "0A" for row in rows):
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def ws_conf(port: int, tls: bool = False, *extra: str) -> str:
    lines = [f"listener {port} {HOST}", "protocol websockets"]
    if tls:
        lines += [f"certfile {TLS / 'server.pem'}", f"keyfile {TLS / 'server.key.pem'}", f"cafile {TLS / 'ca.pem'}"]
    return "\n".join(lines + list(extra))


def start_ws_broker(start_broker, *listener_lines: str, tls: bool = False, global_lines: str = ""):
    """A broker with its TCP listener (b.port) and a WebSocket listener (b.ws_port) whose section
    holds `listener_lines`."""
    port = free_port()
    b = start_broker(global_lines + ws_conf(port, tls, *listener_lines))
    wait_listening(port)
    b.ws_port = port
    return b


@pytest.fixture
def ws_broker(start_broker):
    return start_ws_broker(start_broker)


def client_tls_context(cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(TLS / "ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(str(TLS / f"{cert}.pem"), str(TLS / f"{cert}.key.pem"))
    return ctx


class WSPaho:
    """paho-mqtt over WebSockets, with bounded waits."""

    def __init__(self, port: int, *, v5: bool, tls_cert: str | None = None, tls: bool = False):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid("wspaho"), transport="websockets",
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        if tls or tls_cert:
            self.c.tls_set_context(client_tls_context(tls_cert))
        self.collector = Collector()
        self.c.on_message = self.collector.on_message
        self.connack = None
        self.subacks = []
        self.c.on_connect = lambda c, u, flags, rc, p: setattr(self, "connack", rc)
        self.c.on_subscribe = lambda c, u, mid, codes, p: self.subacks.append(codes)
        self.c.connect("localhost", port, keepalive=30)
        self.c.loop_start()
        self._wait(lambda: self.connack is not None, "no CONNACK over WebSocket")
        assert not self.connack.is_failure, self.connack

    def _wait(self, cond, what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, what
            time.sleep(0.02)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        n = len(self.subacks)
        self.c.subscribe(topic, qos)
        self._wait(lambda: len(self.subacks) > n, "no SUBACK over WebSocket")
        assert not any(code.is_failure for code in self.subacks[-1]), self.subacks[-1]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.c.publish(topic, payload, qos)
        if qos:
            info.wait_for_publish(5)
            assert info.is_published(), "publish over WebSocket not acknowledged"

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def round_trip_with_tcp_clients(b, ws_port: int, *, v5: bool, **tls) -> None:
    """A WebSocket client and TCP clients (mosquitto_pub/sub) talk both ways on one broker."""
    version = "5" if v5 else "311"
    topic = f"ws/{uid()}"
    ws = WSPaho(ws_port, v5=v5, **tls)
    try:
        # TCP → WebSocket
        ws.subscribe(f"{topic}/down/#")
        mosq_pub(b, f"{topic}/down/1", "-q", "1", message="from tcp", version=version)
        got = ws.collector.wait_for(1)
        assert [(m.topic, m.payload) for m in got] == [(f"{topic}/down/1", b"from tcp")]
        # WebSocket → TCP
        sub = SubProcess(b, f"{topic}/up/#", "-q", "1", count=2, version=version)
        time.sleep(0.5)  # let mosquitto_sub subscribe
        ws.publish(f"{topic}/up/1", b"from websocket")
        big = "0123456789abcdef" * 5000  # 80 kB: several TCP reads, a 64-bit frame length
        ws.publish(f"{topic}/up/2", big.encode())
        lines, rc, err = sub.result()
        assert rc == 0, err
        assert lines == ["from websocket", big]
    finally:
        ws.close()


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_paho_over_websockets_talks_to_tcp_clients(ws_broker, v5):
    round_trip_with_tcp_clients(ws_broker, ws_broker.ws_port, v5=v5)


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_paho_over_websockets_with_tls(start_broker, v5):
    b = start_ws_broker(start_broker, tls=True)
    port = b.ws_port
    round_trip_with_tcp_clients(b, port, v5=v5, tls=True)
    # A client that does not trust the server's CA fails the handshake; the listener keeps serving.
    with pytest.raises((ssl.SSLError, OSError)):
        wsraw.WSClient(HOST, port, ssl_context=ssl.create_default_context())
    with wsraw.WSClient(HOST, port, ssl_context=client_tls_context()) as c:
        assert c.connect(uid("after")).reason == 0


def test_websockets_tls_identity_becomes_the_username(start_broker, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("user device1\ntopic readwrite tls/device1/#\n")
    b = start_ws_broker(start_broker, "require_certificate true", "use_identity_as_username true", tls=True,
                        global_lines=f"acl_file {acl}\n")
    port = b.ws_port
    with wsraw.WSClient(HOST, port, version=5, ssl_context=client_tls_context("client")) as c:
        assert c.connect(uid("dev"), version=5).reason == 0
        c.send(mqttraw.publish("tls/device1/t", b"ok", qos=1, packet_id=1, version=5))
        assert c.expect(mqttraw.PUBACK).reason in (0x00, 0x10)  # Success / No matching subscribers
        c.send(mqttraw.publish("tls/other/t", b"no", qos=1, packet_id=2, version=5))
        assert c.expect(mqttraw.PUBACK).reason == 0x87  # Not authorized: the username is the CN
    # No client certificate: the TLS handshake is refused.
    with pytest.raises((ssl.SSLError, OSError, mqttraw.Closed)):
        with wsraw.WSClient(HOST, port, ssl_context=client_tls_context()) as c:
            c.connect(uid("nocert"))
    assert b.alive()


def test_packets_split_at_odd_boundaries_and_fragmented(ws_broker):
    """MQTT packets span frames, frames hold several packets, messages are fragmented into
    continuation frames with control frames in between [MQTT-6.0.0-2] [RFC 6455 5.4]."""
    topic = f"split/{uid()}"
    stream = (mqttraw.connect(uid("split")) + mqttraw.subscribe([(f"{topic}/#", 1)])
              + mqttraw.publish(f"{topic}/a", b"A" * 300, qos=1, packet_id=7)
              + mqttraw.publish(f"{topic}/b", b"B" * 5))
    with wsraw.WSClient(HOST, ws_broker.ws_port) as c:
        # Whole frames at odd sizes: 1, 2, 3, 5, 7, 11, 13, ... bytes.
        sizes = [1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53]
        i = 0
        for n in sizes * 10:
            if i >= len(stream):
                break
            c.send(stream[i:i + n])
            i += n
        assert i >= len(stream)
        assert c.expect(mqttraw.CONNACK).reason == 0
        c.expect(mqttraw.SUBACK)
        got = {}
        for _ in range(3):  # PUBACK for id 7 and the two messages, in any order
            p = c.read_packet()
            got[p.ptype if p.ptype != mqttraw.PUBLISH else p.topic] = p
        assert got[mqttraw.PUBACK].packet_id == 7
        assert got[f"{topic}/a"].payload == b"A" * 300
        assert got[f"{topic}/b"].payload == b"B" * 5

        # One message in fragments: binary (fin=0), continuation..., with a ping in between.
        packet = mqttraw.publish(f"{topic}/c", b"fragmented")
        c.send_frame(wsraw.OP_BINARY, packet[:1], fin=False)
        c.send_frame(wsraw.OP_PING, b"mid")
        c.send_frame(wsraw.OP_CONTINUATION, packet[1:4], fin=False)
        c.send_frame(wsraw.OP_CONTINUATION, b"", fin=False)
        c.send_frame(wsraw.OP_CONTINUATION, packet[4:])
        p = c.expect(mqttraw.PUBLISH)
        assert (p.topic, p.payload) == (f"{topic}/c", b"fragmented")
        assert c.pongs == [b"mid"]

        # Several packets in one frame, and a TCP client sees what the WebSocket client sent.
        sub = SubProcess(ws_broker, f"{topic}/tcp", count=3)
        time.sleep(0.5)
        c.send(b"".join(mqttraw.publish(f"{topic}/tcp", f"m{k}".encode()) for k in range(3)))
        lines, rc, err = sub.result()
        assert (lines, rc) == (["m0", "m1", "m2"], 0), err


def test_large_message_both_ways(ws_broker):
    """A 300 kB publish in 64 kB frames; the broker's frame back uses the 64-bit length."""
    topic = f"big/{uid()}"
    payload = os.urandom(300_000)
    with wsraw.WSClient(HOST, ws_broker.ws_port, timeout=10) as c:
        c.connect(uid("big"))
        c.send(mqttraw.subscribe([(topic, 0)]))
        c.expect(mqttraw.SUBACK)
        packet = mqttraw.publish(topic, payload)
        for i in range(0, len(packet), 65_537):
            c.send(packet[i:i + 65_537])
        p = c.expect(mqttraw.PUBLISH)
        assert p.payload == payload


def test_ping_gets_pong_and_close_gets_close(ws_broker):
    with wsraw.WSClient(HOST, ws_broker.ws_port) as c:
        assert c.connect(uid("ctl")).reason == 0
        c.send_frame(wsraw.OP_PING, b"hello")
        assert c.read_frame() == (True, wsraw.OP_PONG, b"hello")
        c.send_frame(wsraw.OP_PONG, b"unsolicited")  # ignored [RFC 6455 5.5.3]
        c.send(mqttraw.PINGREQ_BYTES)
        assert c.read_packet().ptype == mqttraw.PINGRESP
        c.send_frame(wsraw.OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
        assert c.wait_close_frame() == 1000
        assert c.is_closed()
    assert_serving(ws_broker)


def test_close_publishes_the_will(ws_broker):
    """A WebSocket close without DISCONNECT is an abnormal end for MQTT: the will is sent."""
    topic = f"will/{uid()}"
    with wsraw.WSClient(HOST, ws_broker.ws_port) as watcher, wsraw.WSClient(HOST, ws_broker.ws_port) as c:
        watcher.connect(uid("watch"))
        watcher.send(mqttraw.subscribe([(topic, 0)]))
        watcher.expect(mqttraw.SUBACK)
        assert c.connect(uid("dies"), will=(topic, b"gone", 0, False)).reason == 0
        c.send_frame(wsraw.OP_CLOSE, (1001).to_bytes(2, "big"))
        assert c.wait_close_frame() == 1001
        p = watcher.expect(mqttraw.PUBLISH)
        assert (p.topic, p.payload) == (topic, b"gone")


def test_mqttv31_subprotocol_and_client_order(ws_broker):
    with wsraw.WSClient(HOST, ws_broker.ws_port, version=3, protocols="mqttv3.1") as c:
        assert c.subprotocol == "mqttv3.1"
        assert c.connect(uid("v31"), version=3).reason == 0
    with wsraw.WSClient(HOST, ws_broker.ws_port, protocols="mqtt, chat") as c:
        assert c.subprotocol == "mqtt"
        assert c.connect(uid("v311")).reason == 0


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 (libwebsockets) ignores text and unmasked frames")
@pytest.mark.parametrize("kind,code", [("text", 1003), ("unmasked", 1002), ("reserved-bit", 1002),
                                       ("continuation-first", 1002), ("reserved-opcode", 1002)])
def test_bad_frames_close_the_connection(ws_broker, kind, code):
    with wsraw.WSClient(HOST, ws_broker.ws_port) as c:
        assert c.connect(uid(kind)).reason == 0
        frame = {
            "text": dict(opcode=wsraw.OP_TEXT, payload=mqttraw.PINGREQ_BYTES),
            "unmasked": dict(opcode=wsraw.OP_BINARY, payload=mqttraw.PINGREQ_BYTES, masked=False),
            "reserved-bit": dict(opcode=wsraw.OP_BINARY, payload=mqttraw.PINGREQ_BYTES, rsv=4),
            "continuation-first": dict(opcode=wsraw.OP_CONTINUATION, payload=mqttraw.PINGREQ_BYTES),
            "reserved-opcode": dict(opcode=0x3, payload=b""),
        }[kind]
        c.send_frame(frame.pop("opcode"), frame.pop("payload"), **frame)
        assert c.wait_close_frame() == code
        assert c.is_closed()
    assert_serving(ws_broker)


KEY = base64.b64encode(b"0123456789abcdef")

BAD_UPGRADES = {
    "plain-get": (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 426),
    "missing-key": (wsraw.upgrade_request(None), 400),
    "wrong-version": (wsraw.upgrade_request(KEY, version="8"), 426),
    "no-subprotocol": (wsraw.upgrade_request(KEY, protocols=None), 400),
    "other-subprotocol": (wsraw.upgrade_request(KEY, protocols="chat, superchat"), 400),
    "post": (wsraw.upgrade_request(KEY, method="POST"), 400),
    "mqtt-bytes": (mqttraw.connect("not-http"), 400),
}


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 closes without an HTTP answer, and upgrades a wrong "
                                "Sec-WebSocket-Version or a request without the mqtt subprotocol")
@pytest.mark.parametrize("kind", BAD_UPGRADES)
def test_bad_upgrade_gets_an_http_error(ws_broker, kind):
    request, status = BAD_UPGRADES[kind]
    got, headers, body, closed = wsraw.http_exchange(HOST, ws_broker.ws_port, request)
    assert got == status, (headers, body)
    assert body, "a short reason in the body"
    assert closed, "the connection closes after the error"
    if kind == "wrong-version":
        assert headers.get("sec-websocket-version") == "13"  # [RFC 6455 4.4]
    with wsraw.WSClient(HOST, ws_broker.ws_port) as c:
        assert c.connect(uid("still")).reason == 0
    assert_serving(ws_broker)


@pytest.mark.sluice_only(reason="connect_timeout is a Sluice option")
def test_socket_that_never_upgrades_is_closed(start_broker):
    b = start_ws_broker(start_broker, global_lines="connect_timeout 1\n")
    port = b.ws_port
    with wsraw.open_socket(HOST, port, 5, None) as silent, wsraw.open_socket(HOST, port, 5, None) as slow:
        slow.sendall(b"GET /mqtt HTTP/1.1\r\nHost: local")  # a request head that never ends
        start = time.monotonic()
        for sock in (silent, slow):
            with pytest.raises(mqttraw.Closed):
                wsraw._recv(sock, start + 4)
        assert time.monotonic() - start < 4
    # An upgraded socket that sends no CONNECT is closed after the timeout too.
    with wsraw.WSClient(HOST, port) as c:
        assert c.is_closed(timeout=4)
    assert_serving(b)


@pytest.mark.sluice_only(reason="runs `sluice check` and the Sluice binary")
def test_websockets_listener_with_tls_options_starts(tmp_path):
    port = free_port()
    conf = tmp_path / "ws.conf"
    conf.write_text(f"listener {free_port()} {HOST}\nallow_anonymous true\n"
                    + ws_conf(port, True, "require_certificate false", "tls_version tlsv1.2") + "\n")
    check = subprocess.run([str(require_sluice_binary()), "check", "-c", str(conf)], capture_output=True, text=True,
                           timeout=20)
    assert check.returncode == 0, check.stderr
    log = tmp_path / "log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([str(require_sluice_binary()), "run", "-c", str(conf)], stdout=logf,
                                stderr=subprocess.STDOUT)
    try:
        wait_listening(port, timeout=10)
        with wsraw.WSClient(HOST, port, ssl_context=client_tls_context()) as c:
            assert c.connect(uid("tlsws")).reason == 0
        assert f"listening on {HOST}:{port} (websockets over TLS)" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 does not apply max_connections to a websockets listener")
def test_max_connections_counts_per_websocket_listener(start_broker):
    b = start_ws_broker(start_broker, "max_connections 1")
    port = b.ws_port
    with wsraw.WSClient(HOST, port) as first, wsraw.WSClient(HOST, port) as second:
        assert first.connect(uid("first")).reason == 0
        try:
            refused = second.connect(uid("second")).reason in (0x03, 0x97)  # Server unavailable / Quota
        except mqttraw.Closed:
            refused = True
        assert refused, "a second client on a max_connections 1 WebSocket listener was accepted"
        first.send(mqttraw.PINGREQ_BYTES)
        assert first.read_packet().ptype == mqttraw.PINGRESP
        # The TCP listener has its own (unlimited) count.
        assert_serving(b)


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 reads frames in pieces and has no frame size bound")
def test_oversize_frame_is_closed_with_1009(start_broker):
    b = start_ws_broker(start_broker, global_lines="max_packet_size 1000\n")
    port = b.ws_port
    with wsraw.WSClient(HOST, port) as c:
        assert c.connect(uid("big")).reason == 0
        c.send_frame(wsraw.OP_BINARY, b"\x00" * 3000)
        assert c.wait_close_frame() == 1009
    with wsraw.WSClient(HOST, port) as c:
        c.connect(uid("huge"))
        # A header announcing 2^62 bytes is refused at once, not buffered.
        c.sock.sendall(bytes([0x82, 0xFF]) + (1 << 62).to_bytes(8, "big") + b"mask")
        assert c.wait_close_frame() == 1009
    assert_serving(b)


def test_random_frames_do_not_hurt_the_broker(ws_broker):
    """Bounded junk after a good upgrade: every connection ends or survives, the broker serves."""
    import random
    rng = random.Random(7)
    for round_ in range(30):
        with wsraw.WSClient(HOST, ws_broker.ws_port, timeout=2) as c:
            if round_ % 2:
                c.connect(uid("junk"))
            for _ in range(rng.randint(1, 4)):
                blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
                try:
                    if round_ % 3 == 0:
                        c.sock.sendall(blob)  # not even a frame
                    else:
                        c.send_frame(rng.choice([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3]), blob[:125],
                                     fin=rng.random() < 0.8)
                except OSError:
                    break
    assert_serving(ws_broker)
    with wsraw.WSClient(HOST, ws_broker.ws_port) as c:
        assert c.connect(uid("after-junk")).reason == 0
