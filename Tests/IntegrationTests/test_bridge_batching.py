"""Batched queueing and removal (one store operation per broker-loop turn / per read batch).

A message matching two bridges goes to both queues; its publisher's PUBACK waits for both. With a
pipelined publisher many messages share a batch: each bridge must still get every message once,
in order, whether its central was up all along or came back later."""

from __future__ import annotations

from bridgeharness import BridgeSpec, assert_delivery, bridge_env, mosq_pub_lines  # noqa: F401


def test_two_bridges_one_down_each_get_everything_in_order(bridge_env):
    env = bridge_env
    n = 10_000
    up = env.central().start()
    down = env.central().start()
    counter_up = env.counter(up.port, "gw1/sensors/#")
    counter_down = env.counter(down.port, "gw1/sensors/#")
    gw = env.gateway([BridgeSpec([up.port], name="up"), BridgeSpec([down.port], name="down")]).start()
    gw.wait_connected()
    gw.wait_connected(before=1)
    down.stop()
    # mosquitto_pub -l keeps many QoS 1 messages in flight: they share queue batches. It exits 0
    # only once every one is PUBACKed, i.e. committed to both queues, one central being down.
    mosq_pub_lines(gw.port, "sensors/batch", [str(i) for i in range(1, n + 1)], qos=1, timeout=120)
    arrived_up = counter_up.wait_distinct(n, 60)
    assert counter_down.distinct() == 0, "messages reached a stopped central?"
    down.start()
    arrived_down = counter_down.wait_distinct(n, 120)
    counter_up.settle(1.0)
    counter_down.settle(1.0)
    logs = env.logs()
    # Neither central went away while its bridge was sending: no resend is expected.
    assert_delivery(counter_up, list(range(1, n + 1)), max_duplicates=0, context=logs)
    assert_delivery(counter_down, list(range(1, n + 1)), max_duplicates=0, context=logs)
    assert arrived_up and arrived_down, logs
