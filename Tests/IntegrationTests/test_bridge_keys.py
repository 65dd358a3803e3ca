"""Bridge keys of issue 16 once honoured only at Mosquitto's default or ignored: bridge_outgoing_retain,
bridge_attempt_unsubscribe, bridge_bind_address, local_clientid, local_password, local_cleansession.

Against a real central mosquitto. Where Mosquitto is the reference, the same test runs with Debian's
mosquitto as the edge (`edge` = sluice | mosquitto) and must see the same thing at the central.
"""

import re
import signal
import subprocess
import time

import pytest

from bridgeharness import (HOST, SLUICE_BIN, BridgeSpec, Proc, assert_delivery, bridge_env, publish_numbered,  # noqa: F401
                           require_sluice_binary, uid, wait_until)


class MosquittoEdge(Proc):
    """Debian's mosquitto as the edge: a local listener plus the same bridge section the Sluice gateway gets."""

    name = "edge"

    def __init__(self, workdir, spec: BridgeSpec, extra: list[str] | None = None):
        super().__init__(workdir)
        self.remote_clientids = {spec.name: spec.clientid or uid("mqbridge")}
        lines = [f"listener {self.port} {HOST}", "allow_anonymous true", "user root",
                 "log_type all", "log_dest stderr"] + (extra or [])
        lines += [f"connection {spec.name}", "address " + " ".join(f"{HOST}:{p}" for p in spec.addresses)]
        lines += [f"topic {t}" for t in spec.topics]
        lines += [f"restart_timeout {spec.restart_timeout}", f"keepalive_interval {spec.keepalive}",
                  f"remote_clientid {self.remote_clientids[spec.name]}", "cleansession false"] + spec.extra
        self.conf_text = "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        return ["mosquitto", "-c", str(self.conf_path)]


def start_edge(env, kind: str, spec: BridgeSpec, extra: list[str] | None = None) -> Proc:
    if kind == "sluice":
        edge = env.gateway([spec], extra=extra)
    else:
        edge = MosquittoEdge(env.tmp / f"edge{len(env.procs)}", spec, extra)
        env.procs.append(edge)
    return edge.start()


def state_watcher(env, central, remote_clientid: str):
    """A subscriber at the central to the bridge's notification topic (its "1" says the link is up)."""
    watcher = env.client(central.port, uid("state"))
    watcher.subscribe(f"$SYS/broker/connection/{remote_clientid}/state", 1)
    return watcher


def wait_up(env, watcher, count: int = 1, timeout: float = 20.0) -> None:
    ups = lambda: sum(1 for _, payload, *_ in watcher.received if payload == b"1")  # noqa: E731
    assert wait_until(lambda: ups() >= count, timeout), f"the bridge did not come up\n{env.logs()}"


EDGES = ["sluice", "mosquitto"]


@pytest.mark.parametrize("edge_kind", EDGES)
@pytest.mark.parametrize("outgoing_retain", [None, "true", "false"], ids=["default", "true", "false"])
def test_outgoing_retain(bridge_env, edge_kind, outgoing_retain):
    """false clears the retain flag of what the bridge sends: the central keeps no retained copy of a
    retained local message, nor of the notification "1" (Mosquitto sends it with retain = retain_available)."""
    central = bridge_env.central().start()
    live = bridge_env.client(central.port, uid("live"))
    live.subscribe("gw1/#", 1)
    spec = BridgeSpec([central.port], topics=['sensors/# out 1 "" gw1/'], clientid=uid("edge"),
                      extra=[] if outgoing_retain is None else [f"bridge_outgoing_retain {outgoing_retain}"])
    watcher = state_watcher(bridge_env, central, spec.clientid)
    edge = start_edge(bridge_env, edge_kind, spec)
    wait_up(bridge_env, watcher)
    bridge_env.client(edge.port, uid("pub")).publish("sensors/kept", b"r1", qos=1, retain=True)
    bridge_env.client(edge.port, uid("pub")).publish("sensors/plain", b"p1", qos=1)
    assert wait_until(lambda: len(live.messages("gw1/")) >= 2, 20), bridge_env.logs()
    # A subscriber arriving later gets what the central retained.
    late = bridge_env.client(central.port, uid("late"))
    late.subscribe("gw1/#", 1)
    late.subscribe(f"$SYS/broker/connection/{spec.clientid}/state", 1)
    time.sleep(1.5)
    retained = sorted((topic, payload) for topic, payload, _dup, retain in late.received if retain)
    if outgoing_retain == "false":
        assert retained == [], retained
    else:
        assert retained == [(f"$SYS/broker/connection/{spec.clientid}/state", b"1"), ("gw1/sensors/kept", b"r1")]


@pytest.mark.parametrize("edge_kind", EDGES)
@pytest.mark.parametrize("attempt", ["true", "false"])
def test_attempt_unsubscribe(bridge_env, edge_kind, attempt):
    """A rule changed from `in` to `out`: the central's persistent session still holds the old subscription.
    true (the default) unsubscribes it at connect, so the central stops sending; false leaves it."""
    central = bridge_env.central()
    central.conf_text += "log_type unsubscribe\nlog_type debug\n"
    central.start()
    clientid = uid("edge")
    watcher = state_watcher(bridge_env, central, clientid)
    first = start_edge(bridge_env, edge_kind, BridgeSpec([central.port], topics=['cmd/# in 1 "" gw1/'], clientid=clientid))
    wait_up(bridge_env, watcher)
    first.stop()
    spec = BridgeSpec([central.port], topics=['cmd/# out 1 "" gw1/'], clientid=clientid,
                      extra=[f"bridge_attempt_unsubscribe {attempt}"])
    start_edge(bridge_env, edge_kind, spec)
    wait_up(bridge_env, watcher, count=2)
    time.sleep(1)  # the UNSUBSCRIBE follows the CONNACK
    publish_numbered(central.port, "gw1/cmd/x", 1, 5)
    time.sleep(1.5)
    log = central.log()
    unsubscribed = len(re.findall(rf"{re.escape(clientid)} gw1/cmd/#", log))
    sent = len(re.findall(rf"Sending PUBLISH to {re.escape(clientid)} .*'gw1/cmd/x'", log))
    if attempt == "true":
        assert (unsubscribed, sent) == (1, 0), bridge_env.logs()
    else:
        assert (unsubscribed, sent) == (0, 5), bridge_env.logs()


# bridge_bind_address: Sluice only. Debian's mosquitto 2.0.11 ignores the key: it is built with ADNS, whose
# bridge connect path (bridge__connect_step1) never passes bind_address on; measured, its bridge connects
# from 127.0.0.1 with `bridge_bind_address 127.0.0.2`, so it is no reference to compare with.
def connected_from(central, clientid: str) -> list[str]:
    return re.findall(rf"New (?:client|bridge) connected from ([0-9.]+):\d+ as {re.escape(clientid)} ", central.log())


def test_bind_address_is_the_source_the_central_sees(bridge_env):
    central = bridge_env.central().start()
    spec = BridgeSpec([central.port], clientid=uid("edge"), extra=["bridge_bind_address 127.0.0.2"])
    watcher = state_watcher(bridge_env, central, spec.clientid)
    gw = start_edge(bridge_env, "sluice", spec)
    wait_up(bridge_env, watcher)
    publish_numbered(gw.port, "sensors/t", 1, 5)
    # Reconnects bind too.
    central.stop()
    central.start()
    gw.wait_connected(before=1)
    assert connected_from(central, spec.clientid) == ["127.0.0.2", "127.0.0.2"], central.log_tail()


def test_without_bind_address_the_routing_table_chooses(bridge_env):
    central = bridge_env.central().start()
    spec = BridgeSpec([central.port], clientid=uid("edge"))
    watcher = state_watcher(bridge_env, central, spec.clientid)
    start_edge(bridge_env, "sluice", spec)
    wait_up(bridge_env, watcher)
    assert connected_from(central, spec.clientid) == ["127.0.0.1"], central.log_tail()


def test_bind_address_that_is_not_local_never_connects_and_keeps_running(bridge_env):
    central = bridge_env.central().start()
    spec = BridgeSpec([central.port], clientid=uid("edge"), extra=["bridge_bind_address 192.0.2.1"])
    gw = start_edge(bridge_env, "sluice", spec)
    # Said once, then retried with backoff like any connect failure.
    assert wait_until(lambda: gw.count_log(r"connecting to 127\.0\.0\.1") >= 3, 20), gw.log_tail()
    assert gw.count_log(r"bridge central \(.*\): cannot assign requested address \(bridge_bind_address 192\.0\.2\.1 "
                        r"is not an address of this machine\); retrying") == 1, gw.log_tail()
    result = check(gw.conf_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^warning: bridge 'central': bridge_bind_address 192\.0\.2\.1 is not an address of this machine",
                     result.stdout, re.M), result.stdout
    ok = check_conf(bridge_env, gw.conf_text.replace("192.0.2.1", "127.0.0.2"))
    assert ok.returncode == 0 and "bridge_bind_address" not in ok.stdout, ok.stdout
    assert gw.alive(), gw.log_tail()
    assert spec.clientid not in central.log(), central.log_tail()


ACL = """topic readwrite #

pattern read sensors/%c/#
"""


def test_local_clientid_is_the_client_id_acl_patterns_see(bridge_env):
    """Sluice only: Mosquitto's default ACL check lets bridges pass whatever their id (security_default.c:
    `if(context->bridge) return MOSQ_ERR_SUCCESS`), so there is no Mosquitto reference to run."""
    acl = bridge_env.tmp / "acl"
    acl.write_text(ACL)
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/#")
    spec = BridgeSpec([central.port], topics=['sensors/# out 1 "" gw1/'],
                      extra=["local_username bridgeuser", "local_clientid site-7"])
    gw = bridge_env.gateway([spec], extra=[f"acl_file {acl}"]).start()
    gw.wait_connected()
    publish_numbered(gw.port, "sensors/site-7/t", 1, 20)
    publish_numbered(gw.port, f"sensors/local.{gw.remote_clientids['central']}/t", 101, 110)  # the default id
    publish_numbered(gw.port, "sensors/site-7/t", 21, 40)
    assert counter.wait_distinct(40, 30), bridge_env.logs()
    counter.settle()
    assert_delivery(counter, list(range(1, 41)), max_duplicates=0, context=bridge_env.logs())
    assert gw.count_log(r"local_username 'bridgeuser' read 'sensors/local\.[^']*' as client id 'site-7'") == 1, gw.log_tail()


def gateway_with_passwords(env, local_password: str | None):
    passwd = env.tmp / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "bridgeuser", "right one"], check=True,
                   capture_output=True, timeout=10)
    central = env.central().start()
    extra = ["local_username bridgeuser"] + ([f"local_password {local_password}"] if local_password else [])
    spec = BridgeSpec([central.port], extra=extra)
    gw = env.gateway([spec], extra=[f"password_file {passwd}", "allow_anonymous true"])
    gw.conf_path.write_text(gw.conf_text)
    return central, gw


def check(conf) -> subprocess.CompletedProcess:
    return subprocess.run([str(require_sluice_binary()), "check", "-c", str(conf)], capture_output=True, text=True,
                          timeout=30)


def check_conf(env, text: str) -> subprocess.CompletedProcess:
    conf = env.tmp / f"{uid('check')}.conf"
    conf.write_text(text)
    return check(conf)


WARNING = r"key 'local_password': password_file .* refuses .*Mosquitto does not check it either"


def test_local_password_is_checked_against_password_file(bridge_env):
    central, gw = gateway_with_passwords(bridge_env, "right one")
    result = check(gw.conf_path)
    assert result.returncode == 0 and "warning" not in result.stdout, result.stdout + result.stderr
    gw.start()
    gw.wait_connected()
    assert gw.count_log(WARNING) == 0, gw.log_tail()
    # A SIGHUP with a wrong one is applied (Mosquitto runs such a file) and says what is wrong.
    gw.conf_path.write_text(gw.conf_text.replace("local_password right one", "local_password wrong"))
    gw.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: gw.count_log(WARNING) == 1, 10), gw.log_tail()
    assert gw.count_log("reload failed") == 0, gw.log_tail()
    assert gw.alive() and gw.connected_count() == 1, gw.log_tail()


@pytest.mark.parametrize("local_password", ["wrong", "Right one"])
def test_a_wrong_local_password_is_a_warning_at_check_and_run(bridge_env, local_password):
    """Mosquitto documents local_password as the password of the bridge's local connection, but 2.0.11 never
    checks it, so a mosquitto.conf with a stale one runs there: Sluice runs it too and warns, naming the line."""
    central, gw = gateway_with_passwords(bridge_env, local_password)
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    line = next(i for i, text in enumerate(gw.conf_text.splitlines(), 1) if text.startswith("local_password"))
    expected = rf"{re.escape(str(gw.conf_path))}:{line}: {WARNING}"
    result = check(gw.conf_path)
    assert result.returncode == 0 and re.search("warning: " + expected, result.stdout), result.stdout + result.stderr
    gw.start()
    gw.wait_connected()
    assert gw.count_log(expected) == 1, gw.log_tail()
    publish_numbered(gw.port, "sensors/pw", 1, 3)
    assert counter.wait_distinct(3, 20), bridge_env.logs()


def test_local_username_missing_from_password_file_is_a_warning(bridge_env):
    central, gw = gateway_with_passwords(bridge_env, "right one")
    gw.conf_text = gw.conf_text.replace("local_username bridgeuser", "local_username nobody")
    gw.conf_path.write_text(gw.conf_text)
    result = check(gw.conf_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"warning: .*local_username 'nobody'.* is not in password_file", result.stdout), result.stdout


def test_local_cleansession_true_keeps_the_durable_queue_and_says_so(bridge_env):
    """Sluice's queue is on disk whatever local_cleansession says: messages acknowledged while the central
    is down reach it after a gateway restart, and the start-up notice says that is what happens."""
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    central.stop()
    spec = BridgeSpec([central.port], extra=["cleansession true", "local_cleansession true"])
    gw = bridge_env.gateway([spec]).start()
    assert gw.count_log(r"key 'local_cleansession': accepted but not honoured: .*durable queue") == 1, gw.log_tail()
    publish_numbered(gw.port, "sensors/t", 1, 50)
    gw.stop()
    gw.start()
    central.start()
    assert counter.wait_distinct(50, 60), bridge_env.logs()
    counter.settle()
    assert_delivery(counter, list(range(1, 51)), max_duplicates=0, context=bridge_env.logs())
