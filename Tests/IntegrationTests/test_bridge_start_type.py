"""`start_type lazy|once` against a real central (Debian's mosquitto), counting the gateway's
connections in the central's log and every message at a counter on the central (issue 16)."""

import re
import time

from bridgeharness import BridgeSpec, assert_delivery, bridge_env, publish_numbered, wait_until  # noqa: F401


def connections(central, client_id: str) -> int:
    return central.count_log(rf"New (client|bridge) connected from .* as {re.escape(client_id)} ")


def disconnections(central, client_id: str) -> int:
    return central.count_log(rf"Client {re.escape(client_id)} disconnected\.")


def test_lazy_bridge_connects_at_threshold_and_disconnects_when_idle(bridge_env):
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    spec = BridgeSpec([central.port], extra=["start_type lazy", "threshold 5", "idle_timeout 2"])
    gw = bridge_env.gateway([spec]).start()
    client_id = gw.remote_clientids["central"]

    time.sleep(1.5)
    assert connections(central, client_id) == 0, "a lazy bridge connected with an empty queue"
    publish_numbered(gw.port, "sensors/t", 1, 4)  # acknowledged: on disk, below the threshold
    time.sleep(1.5)
    assert connections(central, client_id) == 0, "connected below the threshold"
    assert counter.distinct() == 0

    publish_numbered(gw.port, "sensors/t", 5, 5)  # the 5th queued message starts it
    assert counter.wait_distinct(5, 15), bridge_env.logs()
    assert connections(central, client_id) == 1

    # Nothing to send for idle_timeout (2 s): a clean DISCONNECT, no reconnect.
    assert wait_until(lambda: disconnections(central, client_id) == 1, 10), bridge_env.logs()
    assert "idle" in gw.log()
    publish_numbered(gw.port, "sensors/t", 6, 8)  # 3 queued: below the threshold again
    time.sleep(1.5)
    assert connections(central, client_id) == 1, "reconnected below the threshold"
    assert counter.distinct() == 5

    publish_numbered(gw.port, "sensors/t", 9, 10)  # 5 queued
    assert counter.wait_distinct(10, 15), bridge_env.logs()
    assert connections(central, client_id) == 2
    counter.settle(0.5)
    assert_delivery(counter, list(range(1, 11)), max_duplicates=0, context=bridge_env.logs())


def test_once_bridge_is_not_restarted_after_the_connection_ends(bridge_env):
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    spec = BridgeSpec([central.port], extra=["start_type once"], restart_timeout="1 1")
    gw = bridge_env.gateway([spec]).start()
    client_id = gw.remote_clientids["central"]
    gw.wait_connected()
    publish_numbered(gw.port, "sensors/t", 1, 3)
    assert counter.wait_distinct(3, 15), bridge_env.logs()
    assert connections(central, client_id) == 1

    central.stop()
    central.start()
    assert counter.wait_connected(10)
    assert wait_until(lambda: "start_type once: not reconnecting" in gw.log(), 10), bridge_env.logs()
    publish_numbered(gw.port, "sensors/t", 4, 5)  # kept in the queue, never sent
    time.sleep(3)  # three restart_timeout periods
    assert connections(central, client_id) == 1, "a once bridge reconnected"
    assert counter.seqs() == [1, 2, 3]
    assert gw.alive()


def test_automatic_bridge_reconnects_for_comparison(bridge_env):
    """The default, so the two tests above cannot pass by a bridge that never reconnects."""
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    gw = bridge_env.gateway([BridgeSpec([central.port], restart_timeout="1 1")]).start()
    client_id = gw.remote_clientids["central"]
    gw.wait_connected()
    central.stop()
    central.start()
    assert counter.wait_connected(10)
    assert wait_until(lambda: connections(central, client_id) == 2, 15), bridge_env.logs()
    publish_numbered(gw.port, "sensors/t", 1, 3)
    assert counter.wait_distinct(3, 15), bridge_env.logs()
