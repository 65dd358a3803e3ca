"""Logs a person reads (issue 18): the start-up banner, one line per client connect and disconnect with
the reason, addresses as 127.0.0.1:PORT, bridge failures in plain words with the retry delay, drain
start/progress/end lines, what a SIGHUP applied and what needs a restart, and log_type as Mosquitto's.

Every test reads the gateway's own log (stderr, as journald would get it) and asserts on its lines."""

from __future__ import annotations

import re
import signal
import time

import pytest

import mqttraw
from bridgeharness import BridgeSpec, bridge_env, free_port, uid, wait_until  # noqa: F401
from conftest import Broker, IS_SLUICE

pytestmark = pytest.mark.skipif(not IS_SLUICE, reason="checks Sluice's own log lines")

NIO_ADDRESS = re.compile(r"\[IPv[46]\]")  # SwiftNIO's `[IPv4]127.0.0.1/127.0.0.1:49380`


def lines_with(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def wait_log(proc, needle: str, timeout: float = 10) -> str:
    assert wait_until(lambda: needle in proc.log(), timeout), f"no {needle!r} in the log:\n{proc.log()[-3000:]}"
    return proc.log()


# --------------------------------------------------------------------------- banner

def test_startup_banner_names_version_config_store_backlog_and_listeners(tmp_path):
    dead, metrics = free_port(), free_port()
    extra = (f"metrics_listener {metrics} 127.0.0.1\nconnection central\naddress 127.0.0.1:{dead}\n"
             f"restart_timeout 1 2\ntopic sensors/# out 1\n")
    b = Broker(tmp_path, extra).start()
    try:
        log = wait_log(b, "ready:")
        assert f"sluice 0.1.0 starting: config {b.conf_path}, pid {b.proc.pid}" in log, log
        assert f"store {tmp_path}/sluice.db opened" in log, log
        assert f"bridge central to 127.0.0.1:{dead}: queue empty" in log, log
        assert f"listening on 127.0.0.1:{b.port} (mqtt, plain)" in log, log
        assert f"metrics listening on 127.0.0.1:{metrics} (HTTP: / status page, /metrics, /healthz)" in log, log
        assert f"sluice 0.1.0 ready: 1 listener, 1 bridge, metrics on 127.0.0.1:{metrics}" in log, log
        # A backlog while the central is down is named at the next start.
        with mqttraw.RawClient(b.host, b.port) as c:
            assert c.connect(uid("banner")).reason == 0
            for i in range(5):
                c.send(mqttraw.publish("sensors/t", b"%d" % i, qos=1, packet_id=i + 1))
                c.expect(mqttraw.PUBACK)
        b.restart()
        log = wait_log(b, "restored")
        restored = lines_with(log, "bridge central to")[-1]
        assert re.search(rf"bridge central to 127\.0\.0\.1:{dead}: 5 queued messages restored "
                         r"\(\d+ B, oldest \d+\.\d s old\)", restored), restored
    finally:
        b.stop()


# --------------------------------------------------------------------------- clients

def test_connect_and_disconnect_lines_give_address_version_and_reason(broker):
    ids = {k: uid(k) for k in ("clean", "dropped", "idle", "taken", "broken", "garbled", "five")}
    with mqttraw.RawClient(broker.host, broker.port) as c:
        assert c.connect(ids["clean"], keepalive=30).reason == 0
        local_port = c.sock.getsockname()[1]
        c.send(mqttraw.disconnect())
        assert c.is_closed()
    with mqttraw.RawClient(broker.host, broker.port) as c:
        assert c.connect(ids["dropped"]).reason == 0
    with mqttraw.RawClient(broker.host, broker.port) as c:
        assert c.connect(ids["idle"], keepalive=1).reason == 0
        assert c.is_closed(4)  # 1.5 × keep-alive of silence
    first = mqttraw.RawClient(broker.host, broker.port)
    second = mqttraw.RawClient(broker.host, broker.port)
    try:
        assert first.connect(ids["taken"]).reason == 0
        assert second.connect(ids["taken"]).reason == 0
        assert first.is_closed()
    finally:
        first.close()
        second.close()
    with mqttraw.RawClient(broker.host, broker.port) as c:
        assert c.connect(ids["broken"]).reason == 0
        c.send(mqttraw.connect(ids["broken"]))  # a second CONNECT
        assert c.is_closed()
    with mqttraw.RawClient(broker.host, broker.port) as c:
        assert c.connect(ids["garbled"]).reason == 0
        c.send(b"\x00\x00")  # packet type 0 is reserved: malformed
        assert c.is_closed()
    with mqttraw.RawClient(broker.host, broker.port, version=5) as c:
        assert c.connect(ids["five"], version=5).reason == 0
        c.send(mqttraw.disconnect(version=5, reason=0x04))
        assert c.is_closed()

    def disconnected(client: str) -> list[str]:
        return [line for line in broker.log().splitlines() if f"client {client} disconnected" in line]

    assert wait_until(lambda: all(disconnected(i) for i in ids.values()), 5), broker.log()
    log = broker.log()
    connected = lines_with(log, f"client {ids['clean']} connected")
    assert connected == [connected[0]] and connected[0].endswith(
        f"client {ids['clean']} connected from 127.0.0.1:{local_port} (MQTT 3.1.1, clean start, keep-alive 30 s)"), log
    assert disconnected(ids["clean"])[0].endswith(
        f"client {ids['clean']} disconnected from 127.0.0.1:{local_port} (MQTT 3.1.1): DISCONNECT"), log
    assert disconnected(ids["dropped"])[0].endswith("socket closed without DISCONNECT"), log
    assert disconnected(ids["idle"])[0].endswith("keep-alive timeout"), log
    assert disconnected(ids["taken"])[0].endswith("session taken over by a new connection"), log
    assert disconnected(ids["broken"])[0].endswith("protocol error: second CONNECT"), log
    assert re.search(r"\(MQTT 3\.1\.1\): protocol error: \S", disconnected(ids["garbled"])[0]), log
    assert disconnected(ids["five"])[0].endswith("(MQTT 5.0): DISCONNECT 0x4 (disconnect with will message)"), log
    for key, i in ids.items():  # one line per connection, not two
        assert len(disconnected(i)) == (2 if key == "taken" else 1), (i, log)  # taken: old and new connection
    assert not NIO_ADDRESS.search(log), log


def test_max_connections_refusals_logged_once_then_summed(tmp_path):
    b = Broker(tmp_path, "max_connections 1\n", persistence=False).start()
    try:
        with mqttraw.RawClient(b.host, b.port) as holder:
            assert holder.connect(uid("holder")).reason == 0
            for _ in range(6):
                with mqttraw.RawClient(b.host, b.port, version=5) as c:
                    assert c.connect(uid("extra"), version=5).reason == 0x97
            time.sleep(0.5)
        refusals = [line for line in b.log().splitlines() if "refused: 0x97 (quota exceeded): max_connections reached" in line]
        assert len(refusals) == 1, b.log()  # the other five wait for the minute's summary line
        assert re.search(r"client extra-\w+ from 127\.0\.0\.1:\d+ \(MQTT 5\.0\) refused", refusals[0]), refusals
    finally:
        b.stop()


def test_log_type_filters_as_mosquitto(tmp_path):
    b = Broker(tmp_path, "log_type error\nlog_type subscribe\n", persistence=False).start()
    try:
        client = uid("lt")
        with mqttraw.RawClient(b.host, b.port) as c:
            assert c.connect(client).reason == 0
            c.send(mqttraw.subscribe([("a/+", 1)]))
            c.expect(mqttraw.SUBACK)
            c.send(mqttraw.disconnect())
        log = wait_log(b, "subscribed to")
        assert f"client {client} subscribed to 'a/+' (QoS 1)" in log, log
        assert f"client {client} connected" not in log, log  # information lines are not asked for
        assert "listening on" not in log, log
        assert "log_type=" not in log, log
    finally:
        b.stop()
    # The default types (error, warning, notice, information) do not include subscriptions.
    (tmp_path / "default").mkdir()
    d = Broker(tmp_path / "default", persistence=False).start()
    try:
        with mqttraw.RawClient(d.host, d.port) as c:
            assert c.connect(uid("lt")).reason == 0
            c.send(mqttraw.subscribe([("b/+", 0)]))
            c.expect(mqttraw.SUBACK)
        log = wait_log(d, "connected from")
        assert "subscribed to" not in log, log
    finally:
        d.stop()


# --------------------------------------------------------------------------- bridge

def test_bridge_refusal_says_address_cause_and_retry_then_one_connected_line(bridge_env):
    env = bridge_env
    central = env.central()
    gw = env.gateway([BridgeSpec([central.port])]).start()
    refused = re.compile(rf"bridge central \(127\.0\.0\.1:{central.port}\): connection refused; "
                         r"retrying in \d+\.\d s")
    assert wait_until(lambda: gw.count_log(refused.pattern) >= 1, 10), gw.log_tail()
    time.sleep(4)  # several more attempts (restart_timeout 1 2): summed, not one line each
    assert gw.count_log(refused.pattern) == 1, gw.log_tail()
    central.start()
    gw.wait_connected(timeout=15)
    log = gw.log()
    connected = lines_with(log, "): connected (")
    assert len(connected) == 1, log
    assert f"bridge central (127.0.0.1:{central.port}): connected (MQTT 3.1.1, window 100" in connected[0], log
    assert "connected to address" not in log and "connection to address" not in log, log
    assert "SingleConnectionFailure" not in log and not NIO_ADDRESS.search(log), log


def test_drain_logs_start_progress_and_end_with_count_and_rate(bridge_env):
    env = bridge_env
    central = env.central()
    # 150 msg/s: 2000 messages take ~13 s, so one 10-second progress line falls inside the drain.
    gw = env.gateway([BridgeSpec([central.port], extra=["bridge_max_rate 150"])]).start()
    pub = env.client(gw.port, uid("dpub"))
    for i in range(2000):
        pub.c.publish("sensors/d", b"%d" % i, qos=1)
    assert wait_until(lambda: len(pub.pubacks) >= 2000, 60), f"{len(pub.pubacks)} PUBACKs"
    central.start()
    gw.wait_connected(timeout=15)
    assert wait_until(lambda: "drain finished" in gw.log(), 60), gw.log_tail()
    log = gw.log()
    start = lines_with(log, "bridge central: draining ")
    assert start and re.search(r"bridge central: draining (19\d\d|2000) queued messages", start[0]), log
    progress = [line for line in lines_with(log, "bridge central: draining:")]
    assert progress, log
    assert re.search(r"draining: \d+ sent, \d+ left, \d+ msg/s; about \d+\.\d s to go", progress[0]), progress
    end = lines_with(log, "bridge central: drain finished")[0]
    m = re.search(r"drain finished: (\d+) messages in (\d+\.\d) s \((\d+) msg/s\)", end)
    assert m, end
    assert int(m.group(1)) >= 1900 and 50 <= int(m.group(3)) <= 300, end


# --------------------------------------------------------------------------- SIGHUP

def test_sighup_says_what_was_applied_and_what_needs_a_restart(tmp_path):
    central, new_listener, metrics = free_port(), free_port(), free_port()
    extra = f"connection central\naddress 127.0.0.1:{central}\nrestart_timeout 1 2\ntopic a/# out 1\n"
    b = Broker(tmp_path, extra).start()
    try:
        wait_log(b, "ready:")
        text = b.conf_text + (f"topic b/# out 1\nlistener {new_listener} 127.0.0.1\nmetrics_listener {metrics} 127.0.0.1\n"
                              f"connection second\naddress 127.0.0.1:{central}\ntopic c/# out 1\n")
        b.conf_path.write_text(text)
        b.proc.send_signal(signal.SIGHUP)
        log = wait_log(b, "need a restart")
        applied = lines_with(log, "configuration reloaded: applied")
        assert applied and applied[0].endswith("applied password file, ACL file, bridge central topic rules"), log
        restart = lines_with(log, "need a restart")[0]
        assert "warning" in restart or restart.startswith("<4>"), restart
        for words in ("new bridge second (not started)", f"listener 127.0.0.1:{new_listener} (mqtt) (not opened)",
                      f"metrics_listener 127.0.0.1:{metrics} (the running one is none)"):
            assert words in restart, (words, restart)
        assert b.alive()
    finally:
        b.stop()


def test_port_in_use_is_one_line_naming_the_listener(tmp_path):
    import socket
    import subprocess

    from conftest import require_sluice_binary
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = tmp_path / "gw.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        r = subprocess.run([str(require_sluice_binary()), "run", "-c", str(conf)], capture_output=True, text=True,
                           timeout=20)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == f"sluice: cannot listen on 127.0.0.1:{port} (listener): address already in use", r.stderr
    assert "errno" not in r.stderr, r.stderr


def test_clients_closed_by_a_shutdown_say_so(tmp_path):
    b = Broker(tmp_path, persistence=False).start()
    client = uid("stay")
    c = mqttraw.RawClient(b.host, b.port)
    try:
        assert c.connect(client).reason == 0
        wait_log(b, f"client {client} connected")
        b.stop()
    finally:
        c.close()
    line = lines_with(b.log(), f"client {client} disconnected")
    assert len(line) == 1 and line[0].endswith("(MQTT 3.1.1): gateway shutting down"), b.log()
