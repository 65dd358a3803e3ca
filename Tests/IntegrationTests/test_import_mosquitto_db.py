"""`sluice import-mosquitto-db` (issue 16 item 14): the retained messages and persistent sessions of
Debian's mosquitto survive the switch to Sluice.

Debian's mosquitto writes a real mosquitto.db (retained messages; a clean-session-false QoS 1
subscriber that is offline while QoS 1 messages are published to it; SIGTERM makes it save), the
file is imported into a fresh Sluice store, and `sluice run` must serve the retained messages and
resume the session with session present and every queued message, in order."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import mqttraw
from bridgeharness import Central
from conftest import CONNECT_PROPS, PUBLISH_PROPS, SUBSCRIBE_PROPS, Broker, PahoClient, uid
from test_cli import one_line_error, sluice

pytestmark = pytest.mark.sluice_only(reason="imports into Sluice's store with the sluice CLI")

QUEUED = [f"queued-{n}".encode() for n in range(1, 6)]


def mosquitto_db_with_a_session(workdir: Path, keeper: str) -> Path:
    """Runs Debian's mosquitto, leaves two retained messages and `keeper`'s offline persistent
    session with the QUEUED messages waiting, stops it with SIGTERM; returns its mosquitto.db."""
    central = Central(workdir).start()
    try:
        publisher = PahoClient(central, uid("pub")).connect()
        publisher.publish("ret/one", b"first retained", qos=1, retain=True)
        publisher.publish("ret/two", b"second retained", qos=1, retain=True)
        subscriber = PahoClient(central, keeper, clean=False).connect()
        subscriber.subscribe("q/#", qos=1)
        subscriber.disconnect()
        for n, payload in enumerate(QUEUED, start=1):
            publisher.publish(f"q/{n}", payload, qos=1)  # waits for the PUBACK
        publisher.disconnect()
    finally:
        central.stop()  # SIGTERM: mosquitto saves the database as it exits
    db = workdir / "mosquitto.db"
    assert db.exists() and db.stat().st_size > 0, central.log_tail()
    return db


def imported_into_a_new_gateway(tmp_path: Path) -> tuple[Broker, subprocess.CompletedProcess]:
    """Imports the mosquitto.db the test's central wrote under tmp_path/mosquitto into a new gateway's store."""
    gateway = Broker(tmp_path)
    result = sluice("import-mosquitto-db", str(tmp_path / "mosquitto" / "mosquitto.db"), "-c", str(gateway.conf_path))
    assert result.returncode == 0, result.stderr
    return gateway, result


def test_retained_and_queued_session_messages_survive_the_switch(tmp_path):
    keeper = uid("keeper")
    db = mosquitto_db_with_a_session(tmp_path / "mosquitto", keeper)
    gateway = Broker(tmp_path)  # sluice, persistence true in tmp_path
    result = sluice("import-mosquitto-db", str(db), "-c", str(gateway.conf_path))
    assert result.returncode == 0, result.stderr
    assert ("retained 2, sessions 1, subscriptions 1, queued messages 5, in-flight messages 0"
            in result.stdout), result.stdout
    assert "skipped: 0" in result.stdout, result.stdout

    # A second import without --merge would mix two brokers' state: refused, store untouched.
    again = one_line_error(sluice("import-mosquitto-db", str(db), "-c", str(gateway.conf_path)))
    assert "already holds 1 session(s) and 2 retained message(s)" in again and "--merge" in again, again
    merged = sluice("import-mosquitto-db", str(db), "-c", str(gateway.conf_path), "--merge")
    assert merged.returncode == 0, merged.stderr
    assert "retained 0, sessions 0" in merged.stdout and "skipped: 3" in merged.stdout, merged.stdout
    assert f"skipped session {keeper}: the Sluice store already has a session" in merged.stdout, merged.stdout

    gateway.start()
    try:
        # Beside a running gateway the store is locked: refused, naming the holder.
        locked = one_line_error(sluice("import-mosquitto-db", str(db), "-c", str(gateway.conf_path),
                                       "--merge"))
        assert "in use by another process" in locked, locked

        reader = PahoClient(gateway, uid("reader")).connect()
        reader.subscribe("ret/#", qos=1)
        retained = reader.collector.wait_for(2)
        assert sorted((m.topic, m.payload, m.retain) for m in retained) == [
            ("ret/one", b"first retained", True), ("ret/two", b"second retained", True)]
        reader.disconnect()

        resumed = PahoClient(gateway, keeper, clean=False)
        resumed.connect()
        assert resumed.session_present
        delivered = resumed.collector.wait_for(len(QUEUED))
        assert [m.payload for m in delivered] == QUEUED
        assert [m.topic for m in delivered] == [f"q/{n}" for n in range(1, 6)]
        assert all(m.qos == 1 for m in delivered)
        # Nothing more than the queue (no duplicates), and the subscription itself came along.
        assert resumed.collector.settle(0.5) == delivered
        publisher = PahoClient(gateway, uid("pub")).connect()
        publisher.publish("q/after", b"live", qos=1)
        assert resumed.collector.wait_for(len(QUEUED) + 1)[-1].payload == b"live"
        publisher.disconnect()
        resumed.disconnect()
    finally:
        gateway.stop()


def test_messages_mosquitto_had_sent_unacknowledged_are_resent_with_their_packet_ids(tmp_path):
    """A subscriber that received three QoS 1 messages and vanished without PUBACKs, then missed
    two more: Sluice resends the three as DUP with Mosquitto's packet identifiers, then the two."""
    keeper = uid("inflight")
    central = Central(tmp_path / "mosquitto").start()
    try:
        raw = mqttraw.RawClient(central.host, central.port)
        assert raw.connect(keeper, clean=False).reason == 0
        raw.send(mqttraw.subscribe([("q/#", 1)]))
        raw.expect(mqttraw.SUBACK)
        publisher = PahoClient(central, uid("pub")).connect()
        for n in range(1, 4):
            publisher.publish(f"q/{n}", f"sent-{n}".encode(), qos=1)
        unacknowledged = [raw.expect(mqttraw.PUBLISH) for _ in range(3)]
        raw.abort()  # no PUBACK, no DISCONNECT
        time.sleep(0.5)  # mosquitto notices the socket closed
        for n in range(4, 6):
            publisher.publish(f"q/{n}", f"queued-{n}".encode(), qos=1)
        publisher.disconnect()
    finally:
        central.stop()
    gateway, result = imported_into_a_new_gateway(tmp_path)
    assert "sessions 1, subscriptions 1, queued messages 2, in-flight messages 3" in result.stdout, result.stdout

    gateway.start()
    try:
        raw = mqttraw.RawClient(gateway.host, gateway.port)
        assert raw.connect(keeper, clean=False).session_present
        resent = [raw.expect(mqttraw.PUBLISH) for _ in range(5)]
        assert [p.payload for p in resent] == [b"sent-1", b"sent-2", b"sent-3", b"queued-4", b"queued-5"]
        assert [(p.packet_id, p.dup) for p in resent[:3]] == [(p.packet_id, True) for p in unacknowledged]
        assert not any(p.dup for p in resent[3:])
        for p in resent:
            raw.send(mqttraw.ack(mqttraw.PUBACK, p.packet_id))
        raw.send(mqttraw.disconnect())
        raw.close()
    finally:
        gateway.stop()


def test_mqtt5_session_keeps_its_expiry_subscription_identifier_and_properties(tmp_path):
    keeper = uid("v5")
    central = Central(tmp_path / "mosquitto").start()
    try:
        subscriber = PahoClient(central, keeper, v5=True, clean=False,
                                properties=CONNECT_PROPS(SessionExpiryInterval=3600)).connect()
        subscriber.subscribe("v5/#", qos=1, properties=SUBSCRIBE_PROPS(SubscriptionIdentifier=7))
        subscriber.disconnect()
        publisher = PahoClient(central, uid("pub"), v5=True).connect()
        publisher.publish("v5/x", b"for the v5 session", qos=1,
                          properties=PUBLISH_PROPS(UserProperty=[("k", "v")], ContentType="text/plain"))
        publisher.disconnect()
    finally:
        central.stop()
    gateway, result = imported_into_a_new_gateway(tmp_path)
    assert "sessions 1, subscriptions 1, queued messages 1" in result.stdout, result.stdout
    gateway.start()
    try:
        resumed = PahoClient(gateway, keeper, v5=True, clean=False,
                             properties=CONNECT_PROPS(SessionExpiryInterval=3600)).connect()
        assert resumed.session_present
        [message] = resumed.collector.wait_for(1)
        assert (message.topic, message.payload, message.qos) == ("v5/x", b"for the v5 session", 1)
        assert message.properties.SubscriptionIdentifier == [7]
        assert message.properties.UserProperty == [("k", "v")]
        assert message.properties.ContentType == "text/plain"
        resumed.disconnect()
    finally:
        gateway.stop()


@pytest.mark.parametrize("case", ["missing", "truncated", "not-a-db", "empty"])
def test_bad_input_is_one_line_and_exit_1(tmp_path, case):
    gateway = Broker(tmp_path)
    source = tmp_path / "in.db"
    if case == "truncated":
        good = mosquitto_db_with_a_session(tmp_path / "mosquitto", uid("keeper"))
        source.write_bytes(good.read_bytes()[:-7])
    elif case == "not-a-db":
        source.write_bytes(gateway.conf_path.read_bytes())
    elif case == "empty":
        source.write_bytes(b"")
    result = sluice("import-mosquitto-db", str(source), "-c", str(gateway.conf_path))
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = one_line_error(result)
    expected = {
        "missing": f"{source} does not exist",
        "truncated": "runs past the end of the file",
        "not-a-db": "not a mosquitto.db (its first bytes are not Mosquitto's magic number)",
        "empty": "not a mosquitto.db",
    }[case]
    assert expected in line, line
    if case == "truncated":
        assert "at byte " in line and "chunk" in line, line
    # Nothing was written: the gateway starts on an empty store.
    assert not (tmp_path / "sluice.db").exists()


def test_refused_without_persistence(tmp_path):
    gateway = Broker(tmp_path, persistence=False)
    source = tmp_path / "in.db"
    source.write_bytes(b"\x00\xb5\x00mosquitto db")
    line = one_line_error(sluice("import-mosquitto-db", str(source), "-c", str(gateway.conf_path)))
    assert "persistence true" in line, line
