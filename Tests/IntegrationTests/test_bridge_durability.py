"""Store-and-forward durability: outage backlog, kill -9 of the gateway, central restarts.

Zero lost; duplicates only within the in-flight window (bridge_max_inflight 100); FIFO order
kept (duplicates ignored)."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

from bridgeharness import (BridgeSpec, bridge_env, assert_delivery, free_port, mosq_pub_lines,  # noqa: F401
                           publish_numbered, start_link, uid, wait_until)

WINDOW = 100


def test_outage_backlog_20000_drains_in_order(bridge_env):
    env = bridge_env
    n = 20_000
    central, counter, gw = start_link(env, max_inflight=WINDOW)
    central.stop()
    t0 = time.monotonic()
    mosq_pub_lines(gw.port, "sensors/outage", [str(i) for i in range(1, n + 1)], qos=1,
                   timeout=120)
    t_pub = time.monotonic() - t0
    assert counter.distinct() == 0, "messages reached a stopped central?"
    t1 = time.monotonic()
    central.start()
    arrived = counter.wait_distinct(n, 120)
    t_drain = time.monotonic() - t1
    counter.settle(1.0)
    ctx = (f"publish took {t_pub:.1f}s, drain {t_drain:.1f}s (complete: {arrived})\n"
           f"{env.logs()}")
    # The central never went away during the drain: no resend is expected at all.
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=0, context=ctx)
    assert arrived, ctx


def test_kill9_with_backlog_loses_nothing(bridge_env):
    env = bridge_env
    n = 5_000
    central, counter, gw = start_link(env, max_inflight=WINDOW)
    central.stop()
    publish_numbered(gw.port, "sensors/k9", 1, n)  # every one PUBACKed = on disk
    gw.kill()
    gw.start()
    central.start()
    arrived = counter.wait_distinct(n, 60)
    counter.settle(1.0)
    ctx = f"complete: {arrived}\n{env.logs()}"
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=WINDOW, context=ctx)


def test_kill9_mid_drain_loses_nothing(bridge_env):
    env = bridge_env
    n = 6_000
    central, counter, gw = start_link(env, max_inflight=WINDOW)
    central.stop()
    publish_numbered(gw.port, "sensors/k9d", 1, n)
    central.start()
    assert counter.wait_distinct(n // 3, 60), f"drain did not start\n{env.logs()}"
    gw.kill()
    at_kill = counter.distinct()
    gw.start()
    arrived = counter.wait_distinct(n, 60)
    counter.settle(1.0)
    ctx = f"killed after {at_kill} distinct arrived; complete: {arrived}\n{env.logs()}"
    assert at_kill < n, "drain finished before the kill; the test proved nothing\n" + ctx
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=WINDOW, context=ctx)


def test_central_restart_mid_drain(bridge_env):
    env = bridge_env
    n = 6_000
    central, counter, gw = start_link(env, max_inflight=WINDOW)
    central.stop()
    publish_numbered(gw.port, "sensors/cr", 1, n)
    central.start()
    assert counter.wait_distinct(n // 3, 60), f"drain did not start\n{env.logs()}"
    central.stop()
    at_stop = counter.distinct()
    before = gw.connected_count()
    central.start()
    gw.wait_connected(before, timeout=20)
    arrived = counter.wait_distinct(n, 60)
    counter.settle(1.0)
    ctx = f"central stopped after {at_stop} distinct arrived; complete: {arrived}\n{env.logs()}"
    assert at_stop < n, "drain finished before the central stopped; the test proved nothing\n" + ctx
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=WINDOW, context=ctx)


def test_graceful_restart_with_backlog(bridge_env):
    env = bridge_env
    n = 2_000
    central, counter, gw = start_link(env, max_inflight=WINDOW)
    central.stop()
    publish_numbered(gw.port, "sensors/term", 1, n)
    gw.stop()  # SIGTERM: nothing was in flight, so nothing may be sent twice
    gw.start()
    central.start()
    arrived = counter.wait_distinct(n, 60)
    counter.settle(1.0)
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=0,
                    context=f"complete: {arrived}\n{env.logs()}")


def test_live_traffic_during_drain_keeps_fifo(bridge_env):
    """A backlog built while the central is down; the central comes back while two live QoS 1 streams
    (the default class and priority 0) keep publishing. Every PUBACKed message arrives once, in order
    within its class: the bridge reads the backlog off its loop while live appends keep committing."""
    env = bridge_env
    backlog, live, alarms = 4_000, 1_000, 200
    central, counter, gw = start_link(
        env, max_inflight=WINDOW,
        topics=['sensors/live out 1 "" gw1/', 'sensors/alarm out 1 "" gw1/ priority 0'])
    central.stop()
    publish_numbered(gw.port, "sensors/live", 1, backlog)
    errors: list[BaseException] = []
    live_started = threading.Event()

    def live_publisher():
        try:
            for start in range(backlog + 1, backlog + live + 1, 100):
                publish_numbered(gw.port, "sensors/live", start, start + 99, timeout=60)
                live_started.set()
        except BaseException as e:  # reported below
            errors.append(e)
        finally:
            live_started.set()

    def alarm_publisher():
        try:
            for start in range(1, alarms + 1, 20):
                publish_numbered(gw.port, "sensors/alarm", start, start + 19, timeout=60)
                time.sleep(0.05)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=f, daemon=True) for f in (live_publisher, alarm_publisher)]
    for t in threads:
        t.start()
    assert live_started.wait(60), env.logs()
    central.start()  # while both streams are still publishing
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads) and not errors, f"publishers: {errors}\n{env.logs()}"
    arrived = wait_until(lambda: len(set(counter.seqs("gw1/sensors/live"))) >= backlog + live
                         and len(set(counter.seqs("gw1/sensors/alarm"))) >= alarms, 60, 0.1)
    counter.settle(1.0)
    ctx = f"complete: {arrived}\n{env.logs()}"
    # The central stays up once back: no resend is expected at all.
    assert_delivery(counter, list(range(1, backlog + live + 1)), max_duplicates=0, context=ctx,
                    topic="gw1/sensors/live")
    assert_delivery(counter, list(range(1, alarms + 1)), max_duplicates=0, context=ctx,
                    topic="gw1/sensors/alarm")


def test_kill9_with_commit_window_loses_no_acknowledged_message(bridge_env):
    """queue_commit_window (issue 15) holds each PUBACK until the commit it shares with others: a kill -9 in
    the middle of a stream loses none of the messages that were acknowledged."""
    env = bridge_env
    n = 4_000
    central, counter, gw = start_link(env, max_inflight=WINDOW, extra=["queue_commit_window 200"])
    central.stop()
    pub = env.client(gw.port, uid("pub"), max_inflight=100)
    infos = [pub.c.publish("sensors/cw", str(i), 1) for i in range(1, n + 1)]
    assert wait_until(lambda: sum(info.is_published() for info in infos) >= n // 4, 60), env.logs()
    gw.kill()
    acked = [i for i, info in enumerate(infos, 1) if info.is_published()]
    pub.close()
    assert 0 < len(acked) < n, f"{len(acked)} acknowledged: the kill did not land mid-stream"
    gw.start()
    central.start()
    counter.wait_distinct(len(acked), 60)
    counter.settle(1.0)
    missing = sorted(set(acked) - set(counter.seqs()))
    assert not missing, f"{len(missing)} acknowledged messages lost (first {missing[:5]})\n{env.logs()}"


def store_commits(metrics_port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return int(float(re.search(r"^sluice_store_commits_total (\S+)$", text, re.M).group(1)))


def acknowledged(info) -> bool:
    """PUBACKed; paho raises for a publish made while disconnected (never sent, so not acknowledged)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def publish_open_loop(env, port: int, sensors: int, period: float, seconds: float, first: int,
                      infos: list, wait_acks: float = 0.0) -> None:
    """`sensors` clients, each publishing QoS 1 every `period` s at its own phase without waiting for
    PUBACKs (as sensors do), for `seconds`. Numbers from `first` on; (number, MQTTMessageInfo) go to `infos`.
    With `wait_acks`, waits up to that long for every PUBACK before disconnecting."""
    clients = [env.client(port, uid(f"sensor{s}"), max_inflight=1000) for s in range(sensors)]
    lock = threading.Lock()
    start = time.monotonic()

    def sensor(index: int) -> None:
        tick = start + period * index / sensors
        k = 0
        while tick < start + seconds:
            time.sleep(max(0.0, tick - time.monotonic()))
            number = first + k * sensors + index
            info = clients[index].c.publish("sensors/auto", str(number), 1)
            with lock:
                infos.append((number, info))
            k += 1
            tick += period

    threads = [threading.Thread(target=sensor, args=(i,), daemon=True) for i in range(sensors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    if wait_acks:
        wait_until(lambda: all(acknowledged(info) for _n, info in infos), wait_acks)
    for c in clients:
        c.close()


def test_kill9_under_auto_commit_window_with_open_loop_sensors(bridge_env):
    """The default `queue_commit_window auto` (issue 15): with ten open-loop sensors at 10 msg/s each (100 msg/s
    in all), an append waits up to its hold for the others, so commits are well under one per message; and a
    kill -9 in the middle of such a stream loses none of the messages that were PUBACKed."""
    env = bridge_env
    metrics_port = free_port()
    central = env.central().start()
    counter = env.counter(central.port, "gw1/sensors/#")
    gw = env.gateway([BridgeSpec([central.port], topics=['sensors/# out 1 "" gw1/'], max_inflight=WINDOW)],
                     extra=[f"metrics_listener {metrics_port} 127.0.0.1"]).start()
    gw.wait_connected()
    central.stop()  # appends only: removals after the central's PUBACK would add commits of their own
    assert wait_until(lambda: gw.count_log(r"metrics listening") >= 1, 10), env.logs()
    # Phase 1: count commits against messages.
    first_infos: list = []
    before = store_commits(metrics_port)
    publish_open_loop(env, gw.port, sensors=10, period=0.1, seconds=3.0, first=1, infos=first_infos,
                      wait_acks=20)
    assert all(acknowledged(info) for _n, info in first_infos), env.logs()
    commits = store_commits(metrics_port) - before
    messages = len(first_infos)
    print(f"auto window: {messages} messages from 10 open-loop sensors in {commits} commits")
    assert messages >= 250, f"only {messages} published"
    assert commits <= 0.6 * messages, f"{commits} commits for {messages} messages: the hold did not engage"
    # Phase 2: kill -9 mid-stream.
    infos: list = []
    killer = threading.Timer(1.5, gw.kill)
    killer.start()
    publish_open_loop(env, gw.port, sensors=10, period=0.1, seconds=3.0, first=100_000, infos=infos)
    killer.join()
    acked = sorted(n for n, info in first_infos + infos if acknowledged(info))
    assert 0 < len(acked) - messages < len(infos), \
        f"{len(acked) - messages} of {len(infos)} acknowledged: the kill did not land mid-stream"
    gw.start()
    central.start()
    assert wait_until(lambda: set(acked) <= set(counter.seqs()), 60, 0.2), env.logs()
    counter.settle(1.0)
    missing = sorted(set(acked) - set(counter.seqs()))
    assert not missing, f"{len(missing)} acknowledged messages lost (first {missing[:5]})\n{env.logs()}"


# ResendBound.minimumBound (Sources/SluiceBridge/ResendBound.swift): below this window, in flight plus
# acknowledged-but-not-yet-removed messages stay within it, so that is what one interruption can send again.
RESEND_FLOOR = 50


def test_kill9_mid_drain_at_window_one(bridge_env):
    """bridge_max_inflight 1 (issue 14): removals commit in batches while sending goes on, so a kill -9 can
    send again the one in flight plus the acknowledged ones whose removal had not committed: at most
    RESEND_FLOOR per kill. Two kills mid-drain; every PUBACKed message arrives, in order."""
    env = bridge_env
    n = 4_000
    central, counter, gw = start_link(env, max_inflight=1)
    central.stop()
    publish_numbered(gw.port, "sensors/w1", 1, n)  # every one PUBACKed = on disk
    central.start()
    t0 = time.monotonic()
    kills = []
    for fraction in (4, 2):
        assert counter.wait_distinct(n // fraction, 90), f"drain stalled\n{env.logs()}"
        gw.kill()
        kills.append(counter.distinct())
        gw.start()
    arrived = counter.wait_distinct(n, 90)
    elapsed = time.monotonic() - t0
    counter.settle(1.0)
    delivery_ctx = f"killed after {kills} distinct arrived; complete: {arrived} in {elapsed:.1f}s\n{env.logs()}"
    assert kills[-1] < n, "drain finished before the last kill; the test proved nothing\n" + delivery_ctx
    print(f"window 1: {n} drained across {len(kills)} kills in {elapsed:.1f}s, "
          f"{len(counter.seqs()) - counter.distinct()} duplicates (bound {RESEND_FLOOR * len(kills)})")
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=RESEND_FLOOR * len(kills),
                    context=delivery_ctx)
