"""Sessions: persistent sessions, clean start, session expiry, takeover, session present."""

import time

import pytest

import mqttraw
from conftest import CONNECT_PROPS, SubProcess, mosq_pub, uid


@pytest.mark.parametrize("version", ["31", "311", "5"])
def test_mosquitto_sub_persistent_session_queues_qos1(broker, version):
    cid = uid("psub")
    topic = f"sess/{uid()}"
    extra = ["-x", "60"] if version == "5" else []
    # Register the persistent session and its subscription, then go away (-E: exit on SUBACK).
    sp = SubProcess(broker, topic, "-c", "-i", cid, "-q", "1", "-E", *extra, wait_s=3,
                    version=version)
    _, rc, err = sp.result()
    assert rc == 0, err
    for i in range(5):
        mosq_pub(broker, topic, "-q", "1", message=f"offline-{i}", version=version)
    sp = SubProcess(broker, topic, "-c", "-i", cid, "-q", "1", *extra, count=5, wait_s=4,
                    version=version)
    lines, rc, err = sp.result()
    assert lines == [f"offline-{i}" for i in range(5)], err


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_paho_persistent_session_queues_qos1(broker, paho_client, v5):
    cid = uid("persist")
    topic = f"sess/{uid()}"
    kw = {"properties": CONNECT_PROPS(SessionExpiryInterval=60)} if v5 else {}
    sub = paho_client(cid, v5=v5, clean=False, **kw)
    assert not sub.session_present
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = paho_client(v5=v5)
    for i in range(10):
        pub.publish(topic, f"q{i}".encode(), qos=1)
    sub2 = paho_client(cid, v5=v5, clean=False, connect=False, **kw)
    sub2.connect()
    assert sub2.session_present
    msgs = sub2.collector.wait_for(10, timeout=5)
    assert [m.payload for m in sub2.collector.settle(0.3)] == [f"q{i}".encode() for i in range(10)]
    assert all(m.qos == 1 for m in msgs)


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_clean_start_discards_session(broker, paho_client, v5):
    cid = uid("clean")
    topic = f"sess/{uid()}"
    kw = {"properties": CONNECT_PROPS(SessionExpiryInterval=60)} if v5 else {}
    sub = paho_client(cid, v5=v5, clean=False, **kw)
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = paho_client(v5=v5)
    for i in range(3):
        pub.publish(topic, b"x", qos=1)
    again = paho_client(cid, v5=v5, clean=True, connect=False)
    again.connect()
    assert not again.session_present
    assert again.collector.settle(0.8) == []
    # And the subscription is gone too: new messages are not delivered.
    pub.publish(topic, b"after", qos=1)
    assert again.collector.settle(0.5) == []


def test_session_expiry_elapsed_discards(broker, paho_client):
    cid = uid("expiry")
    topic = f"sess/{uid()}"
    sub = paho_client(cid, v5=True, clean=False,
                      properties=CONNECT_PROPS(SessionExpiryInterval=1))
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = paho_client(v5=True)
    pub.publish(topic, b"queued", qos=1)
    time.sleep(2.5)
    again = paho_client(cid, v5=True, clean=False, connect=False,
                        properties=CONNECT_PROPS(SessionExpiryInterval=1))
    again.connect()
    assert not again.session_present
    assert again.collector.settle(0.8) == []


def test_session_within_expiry_kept(broker, paho_client):
    """Control for the test above: within the expiry the session and its queue survive."""
    cid = uid("expiry")
    topic = f"sess/{uid()}"
    sub = paho_client(cid, v5=True, clean=False,
                      properties=CONNECT_PROPS(SessionExpiryInterval=5))
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = paho_client(v5=True)
    pub.publish(topic, b"queued", qos=1)
    time.sleep(0.5)
    again = paho_client(cid, v5=True, clean=False, connect=False,
                        properties=CONNECT_PROPS(SessionExpiryInterval=5))
    again.connect()
    assert again.session_present
    assert again.collector.wait_for(1, 3)[0].payload == b"queued"


def test_session_expiry_zero_v5_discards_on_disconnect(raw):
    """MQTT 5 with clean start 0 but no Session Expiry Interval: session ends at disconnect."""
    cid = uid("noexp")
    a = raw(5)
    assert a.connect(cid, clean=False).session_present is False
    a.send(mqttraw.disconnect(5))
    a.close()
    time.sleep(0.2)
    b = raw(5)
    assert b.connect(cid, clean=False).session_present is False


def test_takeover_v311_closes_first(raw):
    cid = uid("take")
    a = raw(4)
    assert a.connect(cid).reason == 0
    b = raw(4)
    assert b.connect(cid).reason == 0
    assert a.is_closed(3), "first connection still open after takeover"
    # The second one keeps working.
    b.send(mqttraw.PINGREQ_BYTES)
    assert b.expect(mqttraw.PINGRESP).ptype == mqttraw.PINGRESP


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 closes a taken-over MQTT 5 connection without "
                         "DISCONNECT 0x8E; [MQTT-3.14] / the issue want reason 0x8E Session taken over")
def test_takeover_v5_sends_disconnect_0x8e(raw):
    cid = uid("take5")
    a = raw(5)
    assert a.connect(cid).reason == 0
    b = raw(5)
    assert b.connect(cid).reason == 0
    pkts = a.read_until_close(3)
    disc = [p for p in pkts if p.ptype == mqttraw.DISCONNECT]
    assert disc, f"no DISCONNECT before close: {pkts}"
    assert disc[-1].reason == 0x8E, disc
    b.send(mqttraw.PINGREQ_BYTES)
    b.expect(mqttraw.PINGRESP)


def test_takeover_keeps_persistent_session(raw):
    """A takeover with clean session 0 resumes the first connection's session."""
    cid = uid("takeover")
    topic = f"sess/{uid()}"
    a = raw(4)
    a.connect(cid, clean=False)
    a.send(mqttraw.subscribe([(topic, 1)]))
    a.expect(mqttraw.SUBACK)
    b = raw(4)
    ack = b.connect(cid, clean=False)
    assert ack.session_present is True
    assert a.is_closed(3)
    c = raw(4)
    c.connect(uid("pub"))
    c.send(mqttraw.publish(topic, b"to-b", qos=1, packet_id=7))
    c.expect(mqttraw.PUBACK)
    p = b.expect(mqttraw.PUBLISH)
    assert p.payload == b"to-b" and p.qos == 1


@pytest.mark.parametrize("version", [3, 4, 5])
def test_session_present_flag(raw, version):
    cid = uid("sp")
    props = [(mqttraw.P_SESSION_EXPIRY, 60)] if version == 5 else None
    a = raw(version)
    ack = a.connect(cid, clean=False, properties=props)
    assert ack.reason == 0 and ack.session_present is False
    a.send(mqttraw.disconnect())
    a.close()
    time.sleep(0.1)
    b = raw(version)
    ack = b.connect(cid, clean=False, properties=props)
    assert ack.reason == 0
    if version == 3:
        # MQTT 3.1 has no session present flag (the byte is reserved, 0).
        assert ack.session_present is False
    else:
        assert ack.session_present is True
    b.send(mqttraw.disconnect())
    b.close()
    time.sleep(0.1)
    c = raw(version)
    ack = c.connect(cid, clean=True)
    # [MQTT-3.2.2-1]: clean session/start 1 => session present 0.
    assert ack.reason == 0 and ack.session_present is False


def test_retained_and_persistent_session_survive_restart(broker, paho_client):
    """With `persistence true`, a restart keeps retained messages, persistent sessions and
    their queued QoS 1 messages (what MQTT says a broker keeps)."""
    cid = uid("restart")
    topic = f"sess/{uid()}"
    sub = paho_client(cid, clean=False)
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = paho_client()
    pub.publish(f"{topic}/retained", b"kept-across-restart", qos=1, retain=True)
    for i in range(5):
        pub.publish(topic, f"r{i}".encode(), qos=1)
    pub.disconnect()
    broker.restart()
    again = paho_client(cid, clean=False, connect=False)
    again.connect()
    assert again.session_present
    again.collector.wait_for(5, 5)
    assert again.collector.settle(0.3) and again.collector.payloads() == [
        f"r{i}".encode() for i in range(5)]
    late = paho_client()
    late.subscribe(f"{topic}/#", qos=1)
    msgs = late.collector.wait_for(1, 3)
    assert [(m.topic, m.payload, bool(m.retain)) for m in msgs] == [
        (f"{topic}/retained", b"kept-across-restart", True)]
