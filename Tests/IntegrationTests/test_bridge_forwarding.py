"""Bridge forwarding: prefix remapping for out / in / both, failover, notifications."""

from __future__ import annotations

import time

import pytest

from bridgeharness import (BridgeSpec, bridge_env, free_port, publish_numbered,  # noqa: F401
                           assert_delivery, start_link, uid, wait_until)


@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv50"])
def test_prefix_remapping_out_in_both(bridge_env, protocol):
    env = bridge_env
    central = env.central().start()
    remote = env.client(central.port, uid("remote"))
    remote.subscribe("#", 1)
    spec = BridgeSpec([central.port], topics=['sensors/# out 1 "" gw1/',
                                              'cmd/# in 1 "" gw1/',
                                              'both/# both 1 loc/ rem/'],
                      extra=[f"bridge_protocol_version {protocol}"])
    gw = env.gateway([spec]).start()
    gw.wait_connected()
    local = env.client(gw.port, uid("local"))
    local.subscribe("#", 1)
    time.sleep(1.0)  # the bridge's SUBSCRIBE for the in/both rules reaches the central

    # out: QoS 0 and QoS 1 local publishers; remote topic gets the remote prefix.
    q0 = env.client(gw.port, uid("q0"))
    q0.publish("sensors/a", b"qos0", qos=0)
    local.publish("sensors/b/c", b"qos1", qos=1)
    # not covered by any rule (or covered only for the other direction / other prefix)
    local.publish("other/x", b"nope", qos=1)
    local.publish("cmd/local", b"nope-in-only", qos=1)
    local.publish("both/no-local-prefix", b"nope-prefix", qos=1)
    # both: local loc/both/x -> remote rem/both/x
    local.publish("loc/both/up", b"up", qos=1)

    # in: remote gw1/cmd/x -> local cmd/x ; both: remote rem/both/y -> local loc/both/y
    remote.publish("gw1/cmd/reboot", b"cmd", qos=1)
    remote.publish("cmd/unprefixed", b"nope-remote", qos=1)
    remote.publish("gw1/sensors/fromremote", b"nope-out-only", qos=1)
    remote.publish("rem/both/down", b"down", qos=1)

    def remote_has(topic):
        return any(t == topic for t, *_ in remote.messages())

    def local_has(topic):
        return any(t == topic for t, *_ in local.messages())

    ok = wait_until(lambda: all(remote_has(t) for t in ("gw1/sensors/a", "gw1/sensors/b/c",
                                                        "rem/both/up"))
                    and all(local_has(t) for t in ("cmd/reboot", "loc/both/down")), 10)
    time.sleep(1.5)  # anything that should not be forwarded has had time to show up
    rmsgs = [(t, p) for t, p, _d, r in remote.messages() if not t.startswith("$")]
    lmsgs = [(t, p) for t, p, _d, r in local.messages() if not t.startswith("$")]
    info = f"remote got {rmsgs}\nlocal got {lmsgs}\n{env.logs()}"
    assert ok, "forwarded messages missing\n" + info

    # Remote side: exactly the forwarded ones plus what the remote itself published.
    forwarded_out = sorted((t, p) for t, p in rmsgs
                           if (t, p) not in {("gw1/cmd/reboot", b"cmd"),
                                             ("cmd/unprefixed", b"nope-remote"),
                                             ("gw1/sensors/fromremote", b"nope-out-only"),
                                             ("rem/both/down", b"down")})
    assert forwarded_out == sorted([("gw1/sensors/a", b"qos0"), ("gw1/sensors/b/c", b"qos1"),
                                    ("rem/both/up", b"up")]), info
    # Local side: the inbound ones, once each (no echo of loc/both/up back from the central,
    # no echo of rem/both/down sent out again), plus the local publishes themselves.
    inbound = sorted((t, p) for t, p in lmsgs
                     if (t, p) not in {("sensors/a", b"qos0"), ("sensors/b/c", b"qos1"),
                                       ("other/x", b"nope"), ("cmd/local", b"nope-in-only"),
                                       ("both/no-local-prefix", b"nope-prefix")})
    assert inbound == sorted([("cmd/reboot", b"cmd"), ("loc/both/down", b"down"),
                              ("loc/both/up", b"up")]), info
    assert rmsgs.count(("rem/both/down", b"down")) == 1, "both rule echoed remote message back\n" + info
    assert rmsgs.count(("rem/both/up", b"up")) == 1, info


def test_failover_to_second_address(bridge_env):
    env = bridge_env
    dead_port = free_port()  # nothing listens here: the primary is down
    central2 = env.central().start()
    counter = env.counter(central2.port, "gw1/sensors/#")
    gw = env.gateway([BridgeSpec([dead_port, central2.port])]).start()
    gw.wait_connected(timeout=20)
    n = 300
    publish_numbered(gw.port, "sensors/fo", 1, n)
    counter.wait_distinct(n, 30)
    counter.settle(0.5)
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=0, context=env.logs())


def test_notifications_local_state(bridge_env):
    env = bridge_env
    central, counter, gw = start_link(env)
    # Mosquitto's default notification topic names the remote client id, not the connection (issue 16, bug 7).
    state_topic = f"$SYS/broker/connection/{gw.remote_clientids['central']}/state"

    def retained_state(timeout=5.0):
        c = env.client(gw.port, uid("state"))
        c.subscribe(state_topic, 1)
        wait_until(lambda: c.messages(), timeout)
        msgs = c.messages()
        c.close()
        return msgs

    msgs = retained_state()
    assert msgs and msgs[-1][1] == b"1" and msgs[-1][3], \
        f"expected retained '1' on {state_topic} while connected, got {msgs}\n{env.logs()}"

    # The central also got a retained "1" on connect, on the same topic.
    probe = env.client(central.port, uid("probe"))
    probe.subscribe("$SYS/broker/connection/#", 1)
    wait_until(lambda: any(t == state_topic and p == b"1" and r for t, p, _d, r in probe.messages()), 5)
    assert any(t == state_topic and p == b"1" and r for t, p, _d, r in probe.messages()), \
        f"no retained '1' notification at the central: {probe.messages()}\n{env.logs()}"

    watcher = env.client(gw.port, uid("watch"))
    watcher.subscribe(state_topic, 1)
    central.stop()
    # keepalive_interval 5: "0" must come within the keep-alive timeouts (the TCP close is
    # seen at once; 1.5 x keep-alive + slack is the bound).
    assert wait_until(lambda: any(p == b"0" for _t, p, _d, _r in watcher.messages()), 12), \
        f"no '0' on {state_topic} after the central went down: {watcher.messages()}\n{env.logs()}"
    msgs = retained_state()
    assert msgs and msgs[-1][1] == b"0" and msgs[-1][3], \
        f"expected retained '0' after the central went down, got {msgs}\n{env.logs()}"

    before = gw.connected_count()
    central.start()
    gw.wait_connected(before, timeout=15)
    assert wait_until(lambda: watcher.messages()[-1][1] == b"1", 5), \
        f"no '1' again after reconnect: {watcher.messages()}\n{env.logs()}"


def test_notification_when_central_goes_silent(bridge_env):
    """The central stops answering but keeps the TCP connection open (SIGSTOP): only the
    keep-alive (keepalive_interval 5) can notice. "0" must come within 1.5 x keep-alive plus
    slack, and the bridge must reconnect once the central answers again."""
    env = bridge_env
    central, counter, gw = start_link(env)
    # Mosquitto's default notification topic names the remote client id, not the connection (issue 16, bug 7).
    state_topic = f"$SYS/broker/connection/{gw.remote_clientids['central']}/state"
    watcher = env.client(gw.port, uid("watch"))
    watcher.subscribe(state_topic, 1)
    assert wait_until(lambda: any(p == b"1" for _t, p, _d, _r in watcher.messages()), 5), \
        f"no retained '1' while connected: {watcher.messages()}\n{env.logs()}"
    before = gw.connected_count()
    t0 = time.monotonic()
    central.pause()
    try:
        went_down = wait_until(lambda: watcher.messages()[-1][1] == b"0", 15)
        took = time.monotonic() - t0
    finally:
        central.resume()
    assert went_down, (f"no '0' within 15s of the central going silent (keepalive 5): "
                       f"{watcher.messages()}\n{env.logs()}")
    assert took >= 4, f"'0' after {took:.1f}s although the central only went silent"
    gw.wait_connected(before, timeout=20)
    assert wait_until(lambda: watcher.messages()[-1][1] == b"1", 5), \
        f"no '1' again after the central answered again: {watcher.messages()}\n{env.logs()}"
    # and the link works again
    publish_numbered(gw.port, "sensors/silent", 1, 50)
    counter.wait_distinct(50, 15)
    counter.settle(0.5)
    assert_delivery(counter, list(range(1, 51)), max_duplicates=0, context=env.logs())
