"""A scriptable test central: just enough MQTT 3.1.1 / 5 server to accept a Sluice bridge and
misbehave on purpose, the way real clouds do.

It runs an asyncio server in a thread of the test process (so a test reads and changes its
behaviour directly) and can:
  - refuse PUBACKs with a reason code: for every message (`refuse`), per topic prefix
    (`refuse_topics`), or for messages above a rate (`refuse_above_rate` accepted per second);
  - drop the connection on reading a chosen payload (`drop_on_payload`: a poison message);
  - cut a connection that sends more than `max_publish_rate` PUBLISH per second (AWS-style);
  - advertise a Receive Maximum / Maximum Packet Size (MQTT 5) and enforce the Receive Maximum
    with DISCONNECT 0x93 (acknowledging after `ack_delay` seconds so messages stay in flight);
  - report what it received: every PUBLISH in order (`publishes`), the payloads it accepted
    with a success PUBACK (`accepted`), refusals, cuts and connections, all exact.
Refusing a PUBACK needs MQTT 5 (3.1.1 has no PUBACK reason code): the bridge must use mqttv50.
Everything runs on 127.0.0.1; `stop()` closes the server and every connection.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    code: int | None  # the PUBACK reason sent, None for QoS 0 or when the connection was cut on it
    connection: int
    at: float = 0.0  # time.monotonic() when read


class TestCentral:
    __test__ = False  # not a pytest test class
    def __init__(self, port: int = 0, *, refuse: int | None = None,
                 refuse_topics: dict[str, int] | None = None,
                 refuse_above_rate: float | None = None, refuse_code: int = 0x97,
                 drop_on_payload: bytes | None = None, max_publish_rate: float | None = None,
                 receive_maximum: int | None = None, maximum_packet_size: int | None = None,
                 ack_delay: float = 0.0):
        self.port = port
        self.refuse = refuse
        self.refuse_topics = dict(refuse_topics or {})
        self.refuse_above_rate = refuse_above_rate
        self.refuse_code = refuse_code
        self.drop_on_payload = drop_on_payload
        self.max_publish_rate = max_publish_rate
        self.receive_maximum = receive_maximum
        self.maximum_packet_size = maximum_packet_size
        self.ack_delay = ack_delay
        self.lock = threading.Lock()
        self.publishes: list[Received] = []
        self.accepted: list[bytes] = []
        self.refused: list[tuple[bytes, int]] = []
        self.connections = 0
        self.connect_versions: list[int] = []
        self.will_topics: list[str | None] = []
        self.cuts: list[str] = []  # why we dropped a connection, one entry per cut
        self._accept_times: collections.deque[float] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 5.0) -> "TestCentral":
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)

            async def serve():
                self._server = await asyncio.start_server(self._handle, HOST, self.port)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            self._loop.run_until_complete(serve())
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="testcentral", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("test central did not start")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown():
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            await self._server.wait_closed()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        try:
            fut.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
            self._loop = None

    # ------------------------------------------------------------------ reports

    def accepted_ints(self) -> list[int]:
        with self.lock:
            return [int(p) for p in self.accepted if p.isdigit()]

    def busiest_second(self) -> int:
        """The most PUBLISH packets read within any one second on one connection."""
        with self.lock:
            records = list(self.publishes)
        best = 0
        start = 0
        for end, r in enumerate(records):
            while records[start].connection != r.connection or r.at - records[start].at >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    def accepted_count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def distinct_accepted(self) -> int:
        with self.lock:
            return len(set(self.accepted))

    # ------------------------------------------------------------------ protocol

    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        for _ in range(4):
            b = (await reader.readexactly(1))[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        else:
            raise ValueError("malformed remaining length")
        return first, await reader.readexactly(length)

    @staticmethod
    def _varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n % 128
            n //= 128
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    @staticmethod
    def _skip_varint(body: bytes, i: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            b = body[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, i

    @staticmethod
    def _string(body: bytes, i: int) -> tuple[bytes, int]:
        n = int.from_bytes(body[i:i + 2], "big")
        return body[i + 2:i + 2 + n], i + 2 + n

    def _connack(self, version: int) -> bytes:
        if version != 5:
            return bytes([0x20, 2, 0, 0])
        props = bytearray()
        if self.receive_maximum is not None:
            props += bytes([0x21]) + self.receive_maximum.to_bytes(2, "big")
        if self.maximum_packet_size is not None:
            props += bytes([0x27]) + self.maximum_packet_size.to_bytes(4, "big")
        body = bytes([0, 0]) + self._varint(len(props)) + bytes(props)
        return bytes([0x20]) + self._varint(len(body)) + body

    def _code_for(self, topic: str, now: float) -> int:
        for prefix, code in self.refuse_topics.items():
            if topic.startswith(prefix):
                return code
        if self.refuse is not None:
            return self.refuse
        if self.refuse_above_rate is not None:
            while self._accept_times and now - self._accept_times[0] >= 1.0:
                self._accept_times.popleft()
            if len(self._accept_times) >= self.refuse_above_rate:
                return self.refuse_code
            self._accept_times.append(now)
        return 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        version = 4
        inflight = 0
        publish_times: collections.deque[float] = collections.deque()
        with self.lock:
            self.connections += 1
            connection = self.connections
        try:
            first, body = await self._read_packet(reader)
            if first >> 4 != 1:
                return
            _, i = self._string(body, 0)
            version = body[i] & 0x7F  # the bridge bit (0x80) is welcome
            flags = body[i + 1]
            i += 4
            if version == 5:
                n, i = self._skip_varint(body, i)
                i += n
            _, i = self._string(body, i)  # client id
            will_topic = None
            if flags & 0x04:
                if version == 5:
                    n, i = self._skip_varint(body, i)
                    i += n
                topic, i = self._string(body, i)
                will_topic = topic.decode()
            with self.lock:
                self.connect_versions.append(version)
                self.will_topics.append(will_topic)
            writer.write(self._connack(version))
            while True:
                first, body = await self._read_packet(reader)
                kind = first >> 4
                if kind == 3:  # PUBLISH
                    qos = (first >> 1) & 3
                    topic_b, i = self._string(body, 0)
                    topic = topic_b.decode()
                    pid = None
                    if qos:
                        pid = int.from_bytes(body[i:i + 2], "big")
                        i += 2
                    if version == 5:
                        n, i = self._skip_varint(body, i)
                        i += n
                    payload = bytes(body[i:])
                    now = time.monotonic()
                    record = Received(topic, payload, qos, bool(first & 0x08), bool(first & 1), None,
                                      connection, now)
                    with self.lock:
                        self.publishes.append(record)
                    if self.drop_on_payload is not None and payload == self.drop_on_payload:
                        with self.lock:
                            self.cuts.append(f"poison {payload!r}")
                        writer.close()  # after the PUBACKs already written, like a broker would
                        return
                    if self.max_publish_rate is not None:
                        publish_times.append(now)
                        while publish_times and now - publish_times[0] >= 1.0:
                            publish_times.popleft()
                        if len(publish_times) > self.max_publish_rate:
                            with self.lock:
                                self.cuts.append("rate")
                            writer.close()
                            return
                    if qos == 0:
                        continue
                    inflight += 1
                    if self.receive_maximum is not None and inflight > self.receive_maximum:
                        with self.lock:
                            self.cuts.append("receive maximum")
                        if version == 5:
                            writer.write(bytes([0xE0, 1, 0x93]))
                        writer.close()
                        return
                    with self.lock:
                        code = self._code_for(topic, now)
                        record.code = code
                        if code == 0:
                            self.accepted.append(payload)
                        else:
                            self.refused.append((payload, code))
                    if version == 5 and code:
                        ack = bytes([0x40, 3]) + pid.to_bytes(2, "big") + bytes([code])
                    else:
                        ack = bytes([0x40, 2]) + pid.to_bytes(2, "big")

                    def send_ack(ack=ack):
                        nonlocal inflight
                        inflight -= 1
                        if not writer.is_closing():
                            writer.write(ack)

                    if self.ack_delay > 0:
                        asyncio.get_running_loop().call_later(self.ack_delay, send_ack)
                    else:
                        send_ack()
                elif kind == 6:  # PUBREL
                    writer.write(bytes([0x70, 2]) + body[:2])
                elif kind == 8:  # SUBSCRIBE
                    pid = body[:2]
                    i = 2
                    if version == 5:
                        n, i = self._skip_varint(body, i)
                        i += n
                    codes = bytearray()
                    while i < len(body):
                        _, i = self._string(body, i)
                        codes.append(min(body[i] & 3, 1))
                        i += 1
                    rest = pid + (b"\x00" if version == 5 else b"") + bytes(codes)
                    writer.write(bytes([0x90]) + self._varint(len(rest)) + rest)
                elif kind == 10:  # UNSUBSCRIBE
                    # MQTT 5: one reason code per filter [MQTT-3.11.3-1] (0x00, as no subscription is kept here).
                    rest = body[:2]
                    if version == 5:
                        i = 2
                        n, i = self._skip_varint(body, i)
                        i += n
                        filters = 0
                        while i < len(body):
                            _, i = self._string(body, i)
                            filters += 1
                        rest += b"\x00" + bytes(filters)
                    writer.write(bytes([0xB0]) + self._varint(len(rest)) + rest)
                elif kind == 12:  # PINGREQ
                    writer.write(bytes([0xD0, 0]))
                elif kind == 14:  # DISCONNECT
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            return
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()


def main(argv: list[str] | None = None) -> int:
    """Run as a process (the bench's rate-limited drain): serve until SIGTERM/SIGINT, rewriting a JSON
    status file (what was accepted, cuts, connections) every 0.1 s and once more at exit."""
    import argparse
    import json
    import os
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-publish-rate", type=float, default=None,
                        help="cut a connection that sends more PUBLISH than this in one second")
    parser.add_argument("--status", required=True, help="JSON status file, rewritten every 0.1 s")
    parser.add_argument("--topic-prefix", default="",
                        help="count only messages on topics with this prefix (not the bridge's notification)")
    args = parser.parse_args(argv)
    central = TestCentral(args.port, max_publish_rate=args.max_publish_rate).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    # Counted incrementally, outside the lock: a scan of every record under it every 0.1 s held the
    # server's thread long enough to bunch its reads up (and a rate measured at read time with them).
    consumed = 0
    undecided: list[Received] = []  # read but not yet answered (code still None)
    distinct: set[bytes] = set()
    accepted = 0

    def write_status() -> None:
        nonlocal consumed, undecided, accepted
        with central.lock:
            fresh = central.publishes[consumed:]
            consumed += len(fresh)
            cuts, connections, publishes = len(central.cuts), central.connections, consumed
        now = time.monotonic()
        waiting = []
        for r in undecided + fresh:
            if r.code is None:
                if now - r.at < 2.0:  # its PUBACK may still come; after 2 s it never will (cut, QoS 0)
                    waiting.append(r)
                continue
            if r.code == 0 and r.topic.startswith(args.topic_prefix):
                accepted += 1
                distinct.add(r.payload)
        undecided = waiting
        status = {"accepted": accepted, "distinct": len(distinct), "publishes": publishes, "cuts": cuts,
                  "connections": connections}
        tmp = args.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, args.status)

    while not stop.wait(0.1):
        write_status()
    central.stop()
    write_status()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
