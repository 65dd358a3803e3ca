"""Queue bounds: queue_max_messages 100 with drop_oldest and reject_new."""

from __future__ import annotations

import time

from bridgeharness import (bridge_env, assert_delivery, mosq_pub_lines, start_link,  # noqa: F401
                           uid)

BOUND = 100
N = 150


def test_drop_oldest_keeps_the_newest(bridge_env):
    env = bridge_env
    central, counter, gw = start_link(env, extra=[f"queue_max_messages {BOUND}",
                                                  "queue_overflow drop_oldest"])
    central.stop()
    mosq_pub_lines(gw.port, "sensors/drop", [str(i) for i in range(1, N + 1)], qos=1)
    central.start()
    counter.wait_distinct(BOUND, 30)
    counter.settle(1.5)
    assert_delivery(counter, list(range(N - BOUND + 1, N + 1)), max_duplicates=0,
                    context=env.logs())


def test_reject_new_answers_quota_exceeded(bridge_env):
    env = bridge_env
    central, counter, gw = start_link(env, extra=[f"queue_max_messages {BOUND}",
                                                  "queue_overflow reject_new"])
    central.stop()
    pub = env.client(gw.port, uid("pub5"), v5=True)
    reasons: list[int | None] = []
    for i in range(1, N + 1):
        info = pub.c.publish("sensors/reject", str(i), 1)
        info.wait_for_publish(5)
        with pub.lock:
            reasons.append(pub.pubacks.get(info.mid))
    summary = {}
    for i, r in enumerate(reasons, 1):
        summary.setdefault(r, []).append(i)
    ctx = ("PUBACK reason codes -> sequence numbers: " +
           "; ".join(f"{r!r}: {v[0]}..{v[-1]} ({len(v)})" for r, v in summary.items()) +
           "\n" + env.logs())
    assert reasons[:BOUND] == [0] * BOUND, "first 100 should get PUBACK 0\n" + ctx
    assert reasons[BOUND:] == [0x97] * (N - BOUND), "last 50 should get 0x97\n" + ctx
    assert gw.alive(), ctx
    central.start()
    counter.wait_distinct(BOUND, 30)
    counter.settle(1.5)
    assert_delivery(counter, list(range(1, BOUND + 1)), max_duplicates=0, context=ctx)
