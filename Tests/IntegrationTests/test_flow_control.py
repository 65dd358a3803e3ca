"""Flow control: a QoS 1 publisher that outruns a subscriber has its PUBACKs held while that
subscriber's backlog is at half its queue bound, so what it had acknowledged is delivered rather
than dropped as queue_full (Mosquitto 2.0.11 drops 48-65 % of 5,000 in scripts/burst-drops.py).
A subscriber that stops reading holds its publishers back for at most about half a second.

Every load loop is bounded in count and time.
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import PahoClient, assert_serving, free_port, uid
from test_slow_consumers import metric, stalled_subscriber

pytestmark = pytest.mark.sluice_only(reason="flow control is Sluice's: Mosquitto drops what it "
                                     "acknowledged once a subscriber's queue is full")

MAX_QUEUED = 200


def start(start_broker):
    metrics_port = free_port()
    b = start_broker(f"max_queued_messages {MAX_QUEUED}\nmetrics_listener {metrics_port} 127.0.0.1\n")
    return b, metrics_port


def publish_all(pub: PahoClient, topic: str, count: int, limit: float) -> tuple[int, float]:
    """Publishes `count` QoS 1 messages as fast as the publisher's window allows; returns how many
    were acknowledged within `limit` seconds and how long that took."""
    t0 = time.monotonic()
    infos = [pub.c.publish(topic, f"{i:05d}".encode() + b"y" * 59, 1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(max(0.01, t0 + limit - time.monotonic()))
    return sum(1 for i in infos if i.is_published()), time.monotonic() - t0


def test_publisher_outrunning_a_slow_subscriber_loses_nothing(start_broker):
    b, metrics_port = start(start_broker)
    topic = f"flow/{uid()}"
    count = 3000
    sub = PahoClient(b, uid("slow")).connect()
    lock = threading.Lock()
    got: set[bytes] = set()

    def on_message(client, userdata, msg):
        with lock:
            got.add(msg.payload[:5])
        time.sleep(0.0005)  # about 2,000 msg/s: slower than the publisher; PUBACK after the callback

    sub.c.on_message = on_message
    sub.subscribe(topic, 1)
    pub = PahoClient(b, uid("fast"))
    pub.c.max_inflight_messages_set(50)
    pub.connect()
    try:
        acked, took = publish_all(pub, topic, count, 60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= count:
                    break
            time.sleep(0.1)
        drops = metric(metrics_port, "sluice_dropped_messages_total", reason="queue_full")
        held = metric(metrics_port, "sluice_publish_acks_held_total")
        with lock:
            received = len(got)
        report = (f"acked {acked}/{count} in {took:.2f}s, subscriber got {received}, queue_full drops "
                  f"{drops:.0f}, acknowledgements held {held:.0f}")
        print(report)
        assert acked == count, report
        assert received == count, "acknowledged messages were not delivered: " + report
        assert drops == 0, report
        assert held > 0, "the publisher never outran the subscriber: the test proves nothing. " + report
    finally:
        pub.disconnect()
        sub.disconnect()
    assert_serving(b)


def test_a_subscriber_that_stops_reading_holds_publishers_back_only_briefly(start_broker):
    b, metrics_port = start(start_broker)
    topic = f"flow/{uid()}"
    count = 2000
    stalled = stalled_subscriber(b.port, topic, 1)
    healthy = PahoClient(b, uid("healthy")).connect()
    healthy.subscribe(topic, 1)
    pub = PahoClient(b, uid("pub"))
    pub.c.max_inflight_messages_set(20)
    pub.connect()
    try:
        acked, took = publish_all(pub, topic, count, 30)
        got = {m.payload[:5] for m in healthy.collector.wait_for(count, timeout=10)}
        drops = metric(metrics_port, "sluice_dropped_messages_total", reason="queue_full")
        report = (f"acked {acked}/{count} in {took:.2f}s, healthy subscriber got {len(got)}, "
                  f"queue_full drops {drops:.0f}")
        print(report)
        assert acked == count, report
        # One hold of at most two 250 ms ticks, then the stalled subscriber holds nothing more.
        assert took < 5, "a subscriber that takes nothing held its publisher back: " + report
        assert len(got) == count, report
        # The stalled one keeps its window and its queue bound; the rest is dropped and counted.
        assert drops >= count - 20 - MAX_QUEUED, report
    finally:
        stalled.close()
        pub.disconnect()
        healthy.disconnect()
    assert_serving(b)
