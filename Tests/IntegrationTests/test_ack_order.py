"""PUBACKs go out in the order the PUBLISHes came [MQTT-4.6.0-2], also when some of them wait for
the disk: a message for a bridge is acknowledged once it is in the LMDB queue, one for a local
topic needs nothing saved, and the second must not overtake the first.

Real peers: the Sluice gateway bridged to Debian's mosquitto as the central, paho publishers and
subscribers. Every wait is bounded in time.
"""

from __future__ import annotations

import time

from bridgeharness import assert_delivery, bridge_env, start_link  # noqa: F401 (fixture)

COUNT = 400


def publish_mixed(pub, count: int, timeout: float) -> list:
    """Even numbers to the bridged tree, odd ones to a local topic, as fast as the window allows."""
    infos = [pub.c.publish("sensors/a" if i % 2 == 0 else "local/a", str(i), 1) for i in range(count)]
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.01, deadline - time.monotonic()))
    return infos


def test_pubacks_keep_publish_order_across_bridged_and_local_topics(bridge_env):
    _central, counter, gw = start_link(bridge_env)
    local = bridge_env.client(gw.port)
    local.subscribe("local/#", 1)
    pub = bridge_env.client(gw.port, max_inflight=20)

    infos = publish_mixed(pub, COUNT, 60)

    unacknowledged = [i for i, info in enumerate(infos) if not info.is_published()]
    assert not unacknowledged, f"{len(unacknowledged)} of {COUNT} not acknowledged (first {unacknowledged[:5]})"
    with pub.lock:
        arrival = list(pub.pubacks)  # paho's on_publish, in the order the PUBACKs arrived
    sent = [info.mid for info in infos]
    overtaken = [(a, b) for a, b in zip(arrival, arrival[1:]) if sent.index(b) < sent.index(a)]
    assert arrival == sent, f"PUBACKs out of PUBLISH order at {len(overtaken)} places (first {overtaken[:5]})"
    # And every message went where it should: the bridged half to the central, the rest locally.
    assert counter.wait_distinct(COUNT // 2, 30), f"central got {counter.distinct()} of {COUNT // 2}"
    assert_delivery(counter, list(range(0, COUNT, 2)), max_duplicates=0)
    got = sorted(int(p) for _t, p, _d, _r in local.messages("local/"))
    assert got == list(range(1, COUNT, 2))
