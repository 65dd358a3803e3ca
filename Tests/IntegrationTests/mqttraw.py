"""A tiny hand-written MQTT 3.1.1 / 5.0 packet codec for raw-socket tests.

Only what the integration tests need: build packets byte by byte (so that tests can also
build *wrong* packets) and read replies with a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Packet types
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)

# MQTT 5 property identifiers used here
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_CLIENT_ID = 0x12
P_SERVER_KEEP_ALIVE = 0x13
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_TOPIC_ALIAS = 0x23
P_MAXIMUM_PACKET_SIZE = 0x27

_INT4 = {P_MESSAGE_EXPIRY, P_SESSION_EXPIRY, P_MAXIMUM_PACKET_SIZE, 0x18}
_INT2 = {P_SERVER_KEEP_ALIVE, P_RECEIVE_MAXIMUM, P_TOPIC_ALIAS_MAXIMUM, P_TOPIC_ALIAS}
_BYTE = {P_PAYLOAD_FORMAT, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_STR = {0x03, 0x08, P_ASSIGNED_CLIENT_ID, 0x15, 0x1A, 0x1C, P_REASON_STRING}
_BIN = {0x09, 0x16}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def mqtt_str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def props(pairs: list[tuple[int, object]] | None) -> bytes:
    """Encode an MQTT 5 property block (with its length prefix)."""
    body = bytearray()
    for pid, val in pairs or []:
        body += varint(pid)
        if pid in _INT4:
            body += struct.pack("!I", val)
        elif pid in _INT2:
            body += struct.pack("!H", val)
        elif pid in _BYTE:
            body += bytes([val])
        elif pid in _STR or pid in _BIN:
            body += mqtt_str(val)
        elif pid == 0x26:  # user property
            body += mqtt_str(val[0]) + mqtt_str(val[1])
        elif pid == 0x0B:  # subscription identifier
            body += varint(val)
        else:
            raise ValueError(f"unknown property {pid:#x}")
    return varint(len(body)) + bytes(body)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect(client_id: str | bytes = "", *, version: int = 4, clean: bool = True,
            keepalive: int = 60, properties=None, will=None, protocol_name: bytes | None = None,
            ) -> bytes:
    """CONNECT. version 3 = MQTT 3.1 (MQIsdp), 4 = 3.1.1, 5 = 5.0.

    will = (topic, payload, qos, retain[, will_properties]).
    """
    if protocol_name is None:
        protocol_name = b"MQIsdp" if version == 3 else b"MQTT"
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will is not None:
        wtopic, wpayload, wqos, wretain = will[:4]
        flags |= 0x04 | (wqos << 3) | (0x20 if wretain else 0)
        if version == 5:
            payload += props(will[4] if len(will) > 4 else None)
        payload += mqtt_str(wtopic) + mqtt_str(wpayload)
    vh = mqtt_str(protocol_name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        vh += props(properties)
    return packet(CONNECT, 0, vh + payload)


def publish(topic: str | bytes, payload: bytes = b"", *, qos: int = 0, retain: bool = False,
            dup: bool = False, packet_id: int = 1, version: int = 4, properties=None) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == 5:
        body += props(properties)
    return packet(PUBLISH, flags, body + payload)


def subscribe(filters: list[tuple[str, int]], *, packet_id: int = 1, version: int = 4,
              properties=None, flags: int = 0x02) -> bytes:
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += props(properties)
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(SUBSCRIBE, flags, body)


def ack(ptype: int, packet_id: int) -> bytes:
    return packet(ptype, 0x02 if ptype == PUBREL else 0, struct.pack("!H", packet_id))


def disconnect(version: int = 4, reason: int = 0) -> bytes:
    if version == 5 and reason:
        return packet(DISCONNECT, 0, bytes([reason]))
    return packet(DISCONNECT, 0, b"")


PINGREQ_BYTES = bytes([0xC0, 0x00])


@dataclass
class Packet:
    ptype: int
    flags: int
    body: bytes
    version: int = 4
    # decoded fields (filled for the types the tests look at)
    reason: int | None = None
    session_present: bool | None = None
    properties: dict = field(default_factory=dict)
    topic: str | None = None
    packet_id: int | None = None
    payload: bytes | None = None

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 1)

    def __repr__(self) -> str:
        names = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
                 6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE",
                 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}
        r = f"{names.get(self.ptype, self.ptype)}(flags={self.flags:#x}"
        if self.reason is not None:
            r += f", reason={self.reason:#x}"
        if self.topic is not None:
            r += f", topic={self.topic!r}, id={self.packet_id}, payload={self.payload!r}"
        return r + ")"


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    mult, val = 1, 0
    for _ in range(4):
        b = buf[i]
        i += 1
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, i
        mult *= 128
    raise ValueError("bad varint")


def parse_props(buf: bytes, i: int) -> tuple[dict, int]:
    n, i = _read_varint(buf, i)
    end = i + n
    out: dict = {}
    while i < end:
        pid, i = _read_varint(buf, i)
        if pid in _INT4:
            v = struct.unpack_from("!I", buf, i)[0]; i += 4
        elif pid in _INT2:
            v = struct.unpack_from("!H", buf, i)[0]; i += 2
        elif pid in _BYTE:
            v = buf[i]; i += 1
        elif pid in _STR or pid in _BIN:
            ln = struct.unpack_from("!H", buf, i)[0]
            v = buf[i + 2:i + 2 + ln]; i += 2 + ln
            if pid in _STR:
                v = v.decode("utf-8", "replace")
        elif pid == 0x26:
            ln = struct.unpack_from("!H", buf, i)[0]
            k = buf[i + 2:i + 2 + ln].decode(); i += 2 + ln
            ln = struct.unpack_from("!H", buf, i)[0]
            val = buf[i + 2:i + 2 + ln].decode(); i += 2 + ln
            out.setdefault(0x26, []).append((k, val))
            continue
        elif pid == 0x0B:
            v, i = _read_varint(buf, i)
            out.setdefault(0x0B, []).append(v)
            continue
        else:
            raise ValueError(f"unknown property {pid:#x}")
        out[pid] = v
    return out, end


def decode(ptype: int, flags: int, body: bytes, version: int) -> Packet:
    p = Packet(ptype, flags, body, version)
    if ptype == CONNACK and len(body) >= 2:
        p.session_present = bool(body[0] & 1)
        p.reason = body[1]
        if version == 5 and len(body) > 2:
            p.properties, _ = parse_props(body, 2)
    elif ptype == DISCONNECT:
        p.reason = body[0] if body else 0
        if version == 5 and len(body) > 1:
            p.properties, _ = parse_props(body, 1)
    elif ptype == PUBLISH:
        ln = struct.unpack_from("!H", body, 0)[0]
        p.topic = body[2:2 + ln].decode("utf-8", "replace")
        i = 2 + ln
        if p.qos:
            p.packet_id = struct.unpack_from("!H", body, i)[0]
            i += 2
        if version == 5:
            p.properties, i = parse_props(body, i)
        p.payload = body[i:]
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK):
        p.packet_id = struct.unpack_from("!H", body, 0)[0]
        if ptype == SUBACK:
            rest = body[2:]
            if version == 5:
                p.properties, j = parse_props(body, 2)
                rest = body[j:]
            p.payload = rest  # granted QoS / reason codes
        elif len(body) > 2:
            p.reason = body[2]
        elif ptype != UNSUBACK:
            p.reason = 0
    return p


class Closed(Exception):
    """The peer closed the connection."""


class RawClient:
    """A TCP socket speaking hand-made MQTT bytes, every read bounded by a deadline."""

    def __init__(self, host: str, port: int, *, version: int = 4, timeout: float = 3.0):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data before deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data before deadline") from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed()
        self.buf += chunk

    def read_packet(self, timeout: float | None = None) -> Packet:
        """Next packet; raises Closed on EOF/reset and TimeoutError on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                try:
                    n, i = _read_varint(self.buf, 1)
                except IndexError:
                    n = None
                if n is not None and len(self.buf) >= i + n:
                    hdr = self.buf[0]
                    body = self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return decode(hdr >> 4, hdr & 0x0F, body, self.version)
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float | None = None) -> Packet:
        p = self.read_packet(timeout)
        assert p.ptype == ptype, f"expected packet type {ptype}, got {p!r}"
        return p

    def connect(self, client_id: str = "", **kw) -> Packet:
        kw.setdefault("version", self.version)
        self.send(connect(client_id, **kw))
        return self.expect(CONNACK)

    def read_until_close(self, timeout: float | None = None) -> list[Packet]:
        """Read packets until the peer closes. Raises TimeoutError if it stays open."""
        got: list[Packet] = []
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for _ in range(10000):
            try:
                got.append(self.read_packet(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
        raise AssertionError("too many packets")

    def is_closed(self, timeout: float = 2.0) -> bool:
        """True if the peer closes within timeout (packets sent before are discarded)."""
        try:
            self.read_until_close(timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close with RST (no FIN handshake niceties): an abnormal disconnect."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_ack_packet = ack  # read_publishes' `ack` flag shadows the function


def read_publishes(c: "RawClient", timeout: float, expect: int | None = None, extra: float = 0.3,
                   ack: bool = False, limit: int = 500) -> list[Packet]:
    """PUBLISHes received within `timeout` s; once `expect` arrived, only `extra` s more.
    With `ack`, QoS 1 ones are acknowledged. At most `limit` packets are read."""
    got = []
    deadline = time.monotonic() + timeout
    for _ in range(limit):
        if expect is not None and len(got) >= expect:
            deadline = min(deadline, time.monotonic() + extra)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            p = c.read_packet(remaining)
        except TimeoutError:
            break
        if p.ptype == PUBLISH:
            got.append(p)
            if ack and p.qos == 1:
                c.send(_ack_packet(PUBACK, p.packet_id))
    return got

