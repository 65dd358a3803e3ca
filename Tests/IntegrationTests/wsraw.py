"""A hand-written WebSocket client (RFC 6455) carrying raw MQTT bytes, for tests.

No dependency beyond the standard library. `WSClient` is a `mqttraw.RawClient` whose bytes travel
in WebSocket frames: `send` wraps bytes in one masked binary frame, reads unwrap binary and
continuation frames into the MQTT byte stream, so `connect`, `expect`, `read_packet` and
`is_closed` work as over TCP. `send_frame` writes any frame (unmasked, reserved bits, fragments,
control frames) and `read_frame` reads the server's next frame as it is.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time

import mqttraw

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class HandshakeRefused(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_http_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes, bytes]:
    """Status, headers (lowercased names), body (up to close or Content-Length), leftover bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock, deadline)
        if len(data) > 65536:
            raise AssertionError("HTTP response head too long")
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status == 101:
        return status, headers, b"", rest
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(rest) < length:
        try:
            chunk = _recv(sock, deadline)
        except mqttraw.Closed:
            break
        rest += chunk
    return status, headers, rest if length < 0 else rest[:length], b""


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no data before deadline")
    sock.settimeout(remaining)
    try:
        chunk = sock.recv(65536)
    except socket.timeout:
        raise TimeoutError("no data before deadline") from None
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        chunk = b""
    if not chunk:
        raise mqttraw.Closed()
    return chunk


def open_socket(host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if ssl_context is not None:
        sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
    return sock


def upgrade_request(key: bytes | None, *, protocols: str | None = "mqtt", version: str | None = "13",
                    path: str = "/mqtt", method: str = "GET", upgrade: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key.decode()}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_exchange(host: str, port: int, request: bytes, *, timeout: float = 5.0,
                  ssl_context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes, bool]:
    """Send raw request bytes; return status, headers, body and whether the server then closed."""
    deadline = time.monotonic() + timeout
    with open_socket(host, port, timeout, ssl_context) as sock:
        sock.sendall(request)
        status, headers, body, _ = read_http_response(sock, deadline)
        closed = False
        try:
            while True:
                _recv(sock, deadline)
        except mqttraw.Closed:
            closed = True
        except TimeoutError:
            pass
        return status, headers, body, closed


class WSClient(mqttraw.RawClient):
    def __init__(self, host: str, port: int, *, version: int = 4, timeout: float = 3.0,
                 protocols: str = "mqtt", ssl_context: ssl.SSLContext | None = None):
        self.version = version
        self.timeout = timeout
        self.sock = open_socket(host, port, timeout, ssl_context)
        self.buf = b""  # MQTT byte stream
        self.wire = b""  # undecoded WebSocket bytes
        self.closed = False
        self.close_code: int | None = None
        self.close_frame: bytes | None = None  # payload of the server's close frame, once seen
        self.pongs: list[bytes] = []
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(upgrade_request(key, protocols=protocols))
        status, headers, body, leftover = read_http_response(self.sock, time.monotonic() + timeout)
        if status != 101:
            self.sock.close()
            raise HandshakeRefused(status, headers, body)
        expected = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == expected, headers
        self.subprotocol = headers.get("sec-websocket-protocol")
        self.wire = leftover

    # ---- frames

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> None:
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def send(self, data: bytes) -> None:
        self.send_frame(OP_BINARY, data)

    def _frame_from_wire(self) -> tuple[bool, int, bytes] | None:
        w = self.wire
        if len(w) < 2:
            return None
        fin, opcode = bool(w[0] & 0x80), w[0] & 0x0F
        assert not w[1] & 0x80, "server frames must not be masked [RFC 6455 5.1]"
        n, i = w[1] & 0x7F, 2
        if n == 126:
            if len(w) < 4:
                return None
            n, i = struct.unpack("!H", w[2:4])[0], 4
        elif n == 127:
            if len(w) < 10:
                return None
            n, i = struct.unpack("!Q", w[2:10])[0], 10
        if len(w) < i + n:
            return None
        self.wire = w[i + n:]
        return fin, opcode, w[i:i + n]

    def read_frame(self, timeout: float | None = None) -> tuple[bool, int, bytes]:
        """The server's next frame (fin, opcode, payload); raises Closed or TimeoutError."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self._frame_from_wire()
            if frame is not None:
                return frame
            try:
                self.wire += _recv(self.sock, deadline)
            except mqttraw.Closed:
                self.closed = True
                raise

    def _fill(self, deadline: float) -> None:
        """Read frames until MQTT bytes arrive (RawClient's read loop calls this)."""
        while True:
            fin, opcode, payload = self.read_frame(max(0.0, deadline - time.monotonic()) or 0.001)
            if opcode in (OP_BINARY, OP_CONTINUATION):
                if payload:
                    self.buf += payload
                    return
            elif opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
            elif opcode == OP_PONG:
                self.pongs.append(payload)
            elif opcode == OP_CLOSE:
                self.close_frame = payload
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.closed = True
                raise mqttraw.Closed()
            else:
                raise AssertionError(f"unexpected frame opcode {opcode:#x} from the server")

    def wait_close_frame(self, timeout: float = 3.0) -> int | None:
        """Read (dropping MQTT bytes) until the server's close frame; its status code (None if it
        carried none). Fails if the connection ends without a close frame or stays open."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            try:
                self._fill(deadline)
            except mqttraw.Closed:
                assert self.close_frame is not None, "connection ended without a close frame"
                return self.close_code
            self.buf = b""
        raise AssertionError("too many frames")
