"""Messages kept for an offline session do not keep the read buffers they arrived in (issue 17).

A PUBLISH payload is decoded as a slice of the buffer its bytes were read into (up to 64 KiB, shared by every
packet of that read). A message queued for an offline persistent session may wait for hours: kept as a slice,
each one would keep its whole read buffer. Here every read carries one small QoS 1 message for the offline
session among ~32 KB of traffic nobody subscribed to, so 1,000 queued messages of 64 B would keep ~32 MB
of read buffers alive; kept as copies they take well under a megabyte.
"""

from __future__ import annotations

import time

import mqttraw
from conftest import rss_bytes, uid
from mqttraw import PUBACK, SUBACK

MIB = 1 << 20
QUEUED = 1_000
FILLER = 32_000


def publish_among_filler(port: int, topic: str, count: int) -> None:
    """`count` QoS 1 PUBLISHes of 64 B on `topic`/N, each written with a large QoS 0 PUBLISH to a topic
    without subscribers, so each lands in a different read; returns once every PUBACK arrived."""
    filler = mqttraw.publish(f"unheard/{uid()}", b"f" * FILLER)
    with mqttraw.RawClient("127.0.0.1", port, timeout=30) as p:
        p.connect(uid("pub"))
        for n in range(1, count + 1):
            p.send(filler + mqttraw.publish(f"{topic}/{n}", b"%064d" % n, qos=1, packet_id=n))
        acked = 0
        while acked < count:
            acked += p.read_packet().ptype == PUBACK


def test_offline_session_queue_keeps_no_read_buffers(start_broker):
    b = start_broker(f"max_queued_messages {2 * QUEUED}\n")
    pid = b.proc.pid
    client_id, topic = uid("away"), f"kept/{uid()}"
    with mqttraw.RawClient("127.0.0.1", b.port) as sub:
        sub.connect(client_id, clean=False)
        sub.send(mqttraw.subscribe([(f"{topic}/#", 1)]))
        sub.expect(SUBACK)
        sub.send(mqttraw.disconnect())
    # Warm-up at the same read sizes (into no session), so the allocator's pools are in the baseline.
    publish_among_filler(b.port, f"warm/{uid()}", 200)
    time.sleep(0.5)
    base = rss_bytes(pid)
    publish_among_filler(b.port, topic, QUEUED)
    time.sleep(0.5)
    grown = rss_bytes(pid) - base
    report = f"{QUEUED} queued messages of 64 B: RSS {base / MIB:.1f} MiB -> +{grown / MIB:.1f} MiB"
    print(report)
    assert grown < 8 * MIB, "queued messages keep their read buffers: " + report

    with mqttraw.RawClient("127.0.0.1", b.port, timeout=10) as sub:
        sub.connect(client_id, clean=False)
        got = []
        while len(got) < QUEUED:
            packet = sub.read_packet()
            if packet.ptype == mqttraw.PUBLISH:
                got.append(packet.payload)
                sub.send(mqttraw.ack(PUBACK, packet.packet_id))
    assert got == [b"%064d" % n for n in range(1, QUEUED + 1)]
