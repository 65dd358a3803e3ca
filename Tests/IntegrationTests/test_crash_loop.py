"""Crash loop: kill -9 of the gateway at random moments, over and over, while the central comes
and goes at random. Issue 6, part 2.

What is proved (RELIABILITY.md states the same guarantees):

* Bridge queue: every QoS 1 message the gateway PUBACKed reaches the central; first arrivals
  keep the publishing order; duplicates only from resends of the in-flight window, so at most
  WINDOW per gateway kill or central restart. Messages that were sent but never PUBACKed may
  or may not arrive (the publisher was told nothing), but never out of order.
* Broker state (retained messages, a persistent session with QoS 1 messages queued for it):
  every change the gateway acknowledged survives every kill. A QoS 1/2 publish that changes
  retained messages or is kept for a persistent session is PUBACKed only after the save that
  holds it has committed. A retained publish cut short by the kill (never acknowledged) may leave
  the old value or the new one, nothing else.

Seeded randomness: the seed is printed; rerun one with SLUICE_CRASH_SEED. The number of
cycles is SLUICE_CRASH_CYCLES (default 20; 12 when CI is set, said in the output).
"""

from __future__ import annotations

import os
import random
import threading
import time

import paho.mqtt.client as mqtt

from bridgeharness import (BridgeSpec, Client, Counter, Gateway, bridge_env,  # noqa: F401
                           uid, wait_until)

WINDOW = 50           # bridge_max_inflight: the bound on resends per interruption


CI_CYCLES = 12  # keeps both tests near 90 s on CI's 2 cores; 20 take about 150 s


def _cycles() -> int:
    if "SLUICE_CRASH_CYCLES" in os.environ:
        return max(1, int(os.environ["SLUICE_CRASH_CYCLES"]))
    return CI_CYCLES if os.environ.get("CI") else 20


def _rng(name: str) -> random.Random:
    seed = int(os.environ.get("SLUICE_CRASH_SEED", str(random.randrange(1 << 30))))
    why = (" (CI: fewer than the default 20 to keep CI time; SLUICE_CRASH_CYCLES overrides)"
           if os.environ.get("CI") and "SLUICE_CRASH_CYCLES" not in os.environ else
           " (SLUICE_CRASH_CYCLES)")
    print(f"{name}: seed {seed} (rerun with SLUICE_CRASH_SEED={seed}), {_cycles()} cycles{why}")
    return random.Random(seed)


class NumberedPublisher:
    """A paho QoS 1 publisher in its own thread that sends numbered payloads until stopped and
    records which numbers were PUBACKed. One per gateway lifetime (clean session, no resend
    into the next lifetime: what was not acknowledged is simply not counted)."""

    def __init__(self, port: int, topic: str, first: int, max_unacked: int = 100):
        self.client = Client(port, uid("crashpub"), max_inflight=20)
        self.client.c.reconnect_delay_set(60, 60)  # never reconnect into the next lifetime
        self.topic = topic
        self.next = first
        self.max_unacked = max_unacked
        self.sent: list[tuple[int, mqtt.MQTTMessageInfo]] = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "NumberedPublisher":
        self.client.connect()
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            if not self.client.c.is_connected():
                return
            unacked = sum(1 for _, info in self.sent[-self.max_unacked:] if not info.is_published())
            if unacked >= self.max_unacked:
                time.sleep(0.002)
                continue
            info = self.client.c.publish(self.topic, str(self.next), 1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            self.sent.append((self.next, info))
            self.next += 1

    def finish(self) -> tuple[list[int], list[int]]:
        """Stops; returns (acknowledged numbers, all numbers sent)."""
        self.stop_flag.set()
        self.thread.join(10)
        acked = [n for n, info in self.sent if info.is_published()]
        self.client.close()
        return acked, [n for n, _ in self.sent]


def _first_arrivals(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for n in seqs:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def test_bridge_crash_loop_loses_nothing_acknowledged(bridge_env):
    env = bridge_env
    rng = _rng("bridge crash loop")
    cycles = _cycles()
    central = env.central().start()
    counter = env.counter(central.port, "gw1/sensors/#")
    spec = BridgeSpec([central.port], topics=['sensors/# out 1 "" gw1/'], max_inflight=WINDOW,
                      restart_timeout="1 1", keepalive=5)
    gw = env.gateway([spec]).start()
    acked: list[int] = []
    sent: list[int] = []
    kills = central_stops = 0
    history: list[str] = []
    next_seq = 1
    t0 = time.monotonic()
    for cycle in range(cycles):
        if not gw.alive():
            gw.start()
        pub = NumberedPublisher(gw.port, "sensors/crash", next_seq).start()
        # The central flips at random, before or during the publishing.
        if rng.random() < 0.4:
            if central.alive():
                central.stop()
                central_stops += 1
            else:
                central.start()
        publish_for = rng.uniform(0.3, 1.5)
        flip_at = rng.uniform(0, publish_for) if rng.random() < 0.3 else None
        start = time.monotonic()
        if flip_at is not None:
            time.sleep(flip_at)
            if central.alive():
                central.stop()
                central_stops += 1
            else:
                central.start()
        time.sleep(max(0.0, publish_for - (time.monotonic() - start)))
        gw.kill()  # while the publisher is still sending
        kills += 1
        a, s = pub.finish()
        acked += a
        sent += s
        next_seq = pub.next
        history.append(f"cycle {cycle}: central {'up' if central.alive() else 'down'}, "
                       f"{len(a)} acked of {len(s)} sent, {counter.distinct()} distinct at central")
        # Sometimes the gateway stays down while the central changes: it must catch up later.
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.1, 0.5))
    loop_time = time.monotonic() - t0
    if not central.alive():
        central.start()
    gw.start()
    acked_set = set(acked)
    t1 = time.monotonic()
    complete = wait_until(lambda: acked_set <= set(counter.seqs()), 180, 0.2)
    drain_time = time.monotonic() - t1
    counter.settle(1.0)
    got = counter.seqs()
    got_set = set(got)
    missing = sorted(acked_set - got_set)
    unexpected = sorted(got_set - set(sent))
    duplicates = len(got) - len(got_set)
    firsts = _first_arrivals(got)
    order_breaks = [(a, b) for a, b in zip(firsts, firsts[1:]) if b <= a]
    dup_bound = WINDOW * (kills + central_stops)
    report = (f"{cycles} cycles in {loop_time:.1f}s, drain {drain_time:.1f}s; {kills} kills, "
              f"{central_stops} central stops; {len(acked)} acked of {len(sent)} sent; got "
              f"{len(got)} ({len(got_set)} distinct); unacked but delivered "
              f"{len(got_set - acked_set)}; duplicates {duplicates} (bound {dup_bound}); "
              f"missing {len(missing)} {missing[:10]}; order breaks {order_breaks[:5]}")
    print(report)
    ctx = report + "\n" + "\n".join(history) + "\n" + env.logs()
    assert len(acked) > cycles * 10, "too few messages acknowledged; the loop proved little\n" + ctx
    assert complete and not missing, "LOST acknowledged messages\n" + ctx
    assert not unexpected, "messages that were never sent\n" + ctx
    assert not order_breaks, "order not kept\n" + ctx
    assert duplicates <= dup_bound, "duplicates beyond the in-flight window\n" + ctx


def _read_retained(port: int, filter_: str, timeout: float = 3.0) -> dict[str, bytes]:
    c = Client(port, uid("retread"))
    try:
        c.connect()
        c.subscribe(filter_, 1)
        c_count = -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # retained messages come at once; wait until quiet
            time.sleep(0.3)
            n = len(c.messages())
            if n == c_count:
                break
            c_count = n
        return {t: p for t, p, _dup, retain in c.messages() if retain}
    finally:
        c.close()


class RetainedWriter:
    """A paho client in its own thread that sets retained values one at a time, each waiting for
    its PUBACK, until stopped: `settled` holds what was acknowledged, `pending` the one in flight."""

    def __init__(self, port: int, rng: random.Random, cycle: int, current: dict[str, bytes]):
        self.client = Client(port, uid("retpub"))
        self.client.c.reconnect_delay_set(60, 60)
        self.rng = random.Random(rng.random())
        self.cycle = cycle
        self.settled = dict(current)
        self.pending: tuple[str, bytes] | None = None
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RetainedWriter":
        self.client.connect()
        self.thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self.stop_flag.is_set() and self.client.c.is_connected():
            topic = f"r/{self.rng.randrange(12)}"
            clear = topic in self.settled and self.rng.random() < 0.2
            value = b"" if clear else f"c{self.cycle}-{n}".encode()
            n += 1
            self.pending = (topic, value)
            info = self.client.c.publish(topic, value, 1, retain=True)
            try:
                info.wait_for_publish(5)
            except RuntimeError:  # paho: "the client is not currently connected"
                return  # the gateway died with this one unacknowledged
            if not info.is_published():
                return
            if clear:
                self.settled.pop(topic, None)
            else:
                self.settled[topic] = value
            self.pending = None
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop_flag.set()
        self.thread.join(10)
        self.client.close()


def test_broker_state_crash_loop(tmp_path):
    """Retained messages and a persistent session's queued QoS 1 messages across kill -9, with the
    kill landing while both are being written."""
    rng = _rng("broker state crash loop")
    cycles = _cycles()
    # The session's queue must hold the whole run: a full queue drops by policy, not by a crash.
    gw = Gateway(tmp_path / "gw", [], extra=["max_queued_messages 0"])
    offline_id = uid("offline")
    try:
        gw.start()
        # The persistent subscriber: subscribes once, then stays away until the end.
        sub = Client(gw.port, offline_id, clean=False)
        sub.connect()
        sub.subscribe("q/#", 1)
        sub.close()
        retained: dict[str, bytes] = {}
        acked: list[int] = []
        sent: list[int] = []
        next_seq = 1
        cut_short = 0
        for cycle in range(cycles):
            if not gw.alive():
                gw.start()
            writer = RetainedWriter(gw.port, rng, cycle, retained).start()
            pub = NumberedPublisher(gw.port, "q/crash", next_seq).start()
            time.sleep(rng.uniform(0.1, 0.8))
            gw.kill()  # while both are writing
            writer.finish()
            a, s = pub.finish()
            acked += a
            sent += s
            next_seq = pub.next
            gw.start()
            # Every acknowledged retained value is there; the one cut short is old or new.
            now = _read_retained(gw.port, "r/#")
            want = dict(writer.settled)
            if writer.pending is not None:
                cut_short += 1
                topic, value = writer.pending
                if now.get(topic, b"") == value:
                    want.pop(topic, None)
                    if value:
                        want[topic] = value
            assert now == want, (f"cycle {cycle}: retained messages after kill -9:\n got "
                                 f"{sorted(now.items())}\n want {sorted(want.items())} "
                                 f"(in flight at the kill: {writer.pending})\n{gw.log_tail()}")
            retained = now
        # The persistent session kept its subscription and every acknowledged queued message.
        sub = Client(gw.port, offline_id, clean=False)
        sub.connect()
        wanted = set(acked)
        wait_until(lambda: wanted <= {int(p) for _t, p, _d, _r in sub.messages("q/")}, 30, 0.2)
        time.sleep(0.5)
        got = [int(p) for _t, p, _d, _r in sub.messages("q/")]
        sub.close()
        missing = sorted(wanted - set(got))
        firsts = _first_arrivals(got)
        report = (f"{cycles} kills; {len(retained)} retained topics intact, {cut_short} retained "
                  f"publishes cut short by a kill; queued: {len(acked)} acknowledged of "
                  f"{len(sent)} sent, got {len(got)} ({len(set(got))} distinct), missing "
                  f"{len(missing)}, unacknowledged but kept {len(set(got) - wanted)}")
        print(report)
        assert len(acked) > cycles * 10, f"too few messages acknowledged; the loop proved little\n{report}"
        assert not missing, f"LOST acknowledged queued messages {missing[:20]}\n{report}\n{gw.log_tail()}"
        assert firsts == sorted(firsts), f"queued messages out of order: {got[:50]}\n{report}"
        assert set(got) <= set(sent), report
    finally:
        gw.stop()


def test_bridge_in_crash_loop_keeps_what_it_acknowledged(bridge_env):
    """Messages arriving over a bridge `in` rule for an offline persistent local subscriber, with
    the gateway killed again and again. The gateway PUBACKs the central only once the message is
    saved for that subscriber, so what it acknowledged survives, and what it had not acknowledged
    the central sends again: every message the central accepted reaches the subscriber."""
    env = bridge_env
    rng = _rng("bridge in crash loop")
    cycles = max(3, _cycles() // 2)
    central = env.central().start()
    spec = BridgeSpec([central.port], topics=['cmd/# in 1 devices/ gw1/'], restart_timeout="1 1",
                      keepalive=5)
    gw = env.gateway([spec], extra=["max_queued_messages 0"]).start()
    sub_id = uid("devsub")
    sub = env.client(gw.port, sub_id, clean=False)
    sub.subscribe("devices/cmd/#", 1)
    sub.close()
    gw.wait_connected(0)
    pub = NumberedPublisher(central.port, "gw1/cmd/valve", 1).start()
    try:
        for _cycle in range(cycles):
            time.sleep(rng.uniform(0.3, 1.2))
            connects = gw.connected_count()
            gw.kill()  # while the central is sending
            time.sleep(rng.uniform(0, 0.5))
            gw.start()
            gw.wait_connected(connects)
        time.sleep(0.5)
    finally:
        acked, sent = pub.finish()
    wanted = set(acked)
    sub = env.client(gw.port, sub_id, clean=False)
    complete = wait_until(lambda: wanted <= {int(p) for _t, p, _d, _r in sub.messages("devices/")}, 60, 0.2)
    time.sleep(0.5)
    got = [int(p) for _t, p, _d, _r in sub.messages("devices/")]
    sub.close()
    missing = sorted(wanted - set(got))
    report = (f"{cycles} kills; central accepted {len(acked)} of {len(sent)}; the persistent local "
              f"subscriber got {len(got)} ({len(set(got))} distinct), missing {len(missing)} {missing[:10]}")
    print(report)
    assert len(acked) > cycles * 10, f"too few messages; the loop proved little\n{report}"
    assert complete and not missing, f"LOST messages the central had accepted\n{report}\n{env.logs()}"
