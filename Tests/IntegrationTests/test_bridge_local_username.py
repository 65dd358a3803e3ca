"""`local_username` (issue 16): the bridge's local side is held to acl_file as that user, as Mosquitto
does. Local messages go to the central (`out`) only where the user may read; messages from the central
(`in`) are published locally only where the user may write. Each denial is counted (metrics) and logged.
Against a real central mosquitto; every numbered message is accounted for."""

import time

from bridgeharness import BridgeSpec, assert_delivery, bridge_env, free_port, publish_numbered, uid, wait_until  # noqa: F401
from test_bridge_refusals import metric, scrape

ACL = """# anonymous local clients: everything
topic readwrite #

user bridgeuser
topic read sensors/allowed/#
topic write cmd/allowed/#
"""


def gateway_with_acl(env, central, local_username: str | None = "bridgeuser"):
    acl = env.tmp / "acl"
    acl.write_text(ACL)
    metrics = free_port()
    extra = [f"local_username {local_username}"] if local_username else []
    spec = BridgeSpec([central.port], topics=['sensors/# out 1 "" gw1/', 'cmd/# in 1 "" gw1/'], extra=extra)
    gw = env.gateway([spec], extra=[f"acl_file {acl}", f"metrics_listener {metrics} 127.0.0.1"]).start()
    gw.wait_connected()
    return gw, metrics


def denied(metrics: int, direction: str) -> float:
    return metric(scrape(metrics), "sluice_bridge_local_acl_denied_total", bridge="central", direction=direction) or 0


def test_out_messages_only_where_local_username_may_read(bridge_env):
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    gw, metrics = gateway_with_acl(bridge_env, central)
    publish_numbered(gw.port, "sensors/allowed/t", 1, 30)
    publish_numbered(gw.port, "sensors/denied/t", 101, 130)
    publish_numbered(gw.port, "sensors/allowed/t", 31, 60)
    assert counter.wait_distinct(60, 30), bridge_env.logs()
    counter.settle()
    assert_delivery(counter, list(range(1, 61)), max_duplicates=0, context=bridge_env.logs())
    assert not [n for n in counter.seqs() if n > 100], "denied messages reached the central"
    assert denied(metrics, "out") == 30 and denied(metrics, "in") == 0
    # Logged once, not once per message.
    assert gw.count_log(r"local_username 'bridgeuser' read 'sensors/denied/t'") == 1, gw.log_tail()


def test_in_messages_only_where_local_username_may_write(bridge_env):
    central = bridge_env.central().start()
    gw, metrics = gateway_with_acl(bridge_env, central)
    local = bridge_env.client(gw.port, uid("local"))
    local.subscribe("cmd/#", 1)
    time.sleep(0.5)  # the bridge's subscription at the central is made at connect; let it settle
    publish_numbered(central.port, "gw1/cmd/denied/x", 101, 120)
    publish_numbered(central.port, "gw1/cmd/allowed/x", 1, 20)
    assert wait_until(lambda: len(local.received) >= 20, 20), bridge_env.logs()
    assert wait_until(lambda: denied(metrics, "in") == 20, 10), scrape(metrics)
    time.sleep(1)
    topics = {topic for topic, *_ in local.received}
    assert topics == {"cmd/allowed/x"}, topics
    assert sorted(int(payload) for _, payload, *_ in local.received) == list(range(1, 21))
    assert gw.count_log(r"local_username 'bridgeuser' write 'cmd/denied/x'") == 1, gw.log_tail()
    # Denied messages are acknowledged to the central (as Mosquitto does), not resent forever.
    time.sleep(1)
    assert denied(metrics, "in") == 20 and gw.connected_count() == 1


def test_without_local_username_the_acl_does_not_apply_to_the_bridge(bridge_env):
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    gw, metrics = gateway_with_acl(bridge_env, central, local_username=None)
    publish_numbered(gw.port, "sensors/denied/t", 1, 10)
    assert counter.wait_distinct(10, 30), bridge_env.logs()
    assert denied(metrics, "out") == 0
