#!/usr/bin/env python3
"""A QoS 1 publisher that outruns one subscriber: how many of its acknowledged messages does the
subscriber get? (BENCHMARKS.md, "A fast publisher into a slow subscriber drops with both brokers").

    python3 scripts/burst-drops.py PORT [COUNT] [PUBLISHER_MAX_INFLIGHT]

Against a broker already listening on 127.0.0.1:PORT (anonymous). One paho-mqtt subscriber on b/t
at QoS 1, then one publisher sends COUNT (default 5,000) QoS 1 messages of 64 bytes as fast as
its window (default 20) allows; prints how many were acknowledged and how many distinct ones the
subscriber received within 15 s. Bounded in count and time.
"""
import sys
import threading
import time

import paho.mqtt.client as mqtt

port = int(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
inflight = int(sys.argv[3]) if len(sys.argv) > 3 else 20
got = set()
lock = threading.Lock()


def on_message(client, userdata, message):
    with lock:
        got.add(message.payload[:5])


kw = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2} if hasattr(mqtt, "CallbackAPIVersion") else {}
sub = mqtt.Client(client_id="burst-sub", **kw)
sub.on_message = on_message
sub.connect("127.0.0.1", port)
sub.subscribe("b/t", 1)
sub.loop_start()
time.sleep(0.5)
pub = mqtt.Client(client_id="burst-pub", **kw)
pub.max_inflight_messages_set(inflight)
pub.max_queued_messages_set(0)
pub.connect("127.0.0.1", port)
pub.loop_start()
start = time.monotonic()
infos = [pub.publish("b/t", f"{i:05d}".encode() + b"y" * 59, 1) for i in range(count)]
for info in infos:
    info.wait_for_publish(30)
acked_after = time.monotonic() - start
deadline = time.monotonic() + 15
while time.monotonic() < deadline and len(got) < count:
    time.sleep(0.1)
acked = sum(info.is_published() for info in infos)
print(f"acked {acked}/{count} in {acked_after:.2f}s, subscriber got {len(got)}")
pub.loop_stop()
sub.loop_stop()
