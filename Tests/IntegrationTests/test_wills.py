"""Will messages: abnormal vs clean disconnect, MQTT 5 will delay, retained wills."""

import time

import pytest

import mqttraw
from mqttraw import PUBLISH, SUBACK
from mqttraw import read_publishes
from conftest import IS_SLUICE, uid


def watcher(raw, topic, qos=1, version=4):
    w = raw(version)
    w.connect(uid("watch"))
    w.send(mqttraw.subscribe([(topic, qos)], version=version))
    w.expect(SUBACK)
    return w


@pytest.mark.parametrize("version", [3, 4, 5])
def test_will_on_abnormal_disconnect(raw, version):
    topic = f"will/{uid()}"
    w = watcher(raw, topic)
    c = raw(version)
    assert c.connect(uid("dying"), will=(topic, b"gone", 1, False)).reason == 0
    c.abort()
    got = read_publishes(w, 2.0, expect=1, ack=True)
    assert [(p.topic, p.payload, p.qos) for p in got] == [(topic, b"gone", 1)]


@pytest.mark.parametrize("version", [3, 4, 5])
def test_no_will_on_clean_disconnect(raw, version):
    topic = f"will/{uid()}"
    w = watcher(raw, topic)
    c = raw(version)
    c.connect(uid("polite"), will=(topic, b"gone", 1, False))
    c.send(mqttraw.disconnect(version))
    assert c.is_closed(2)
    assert read_publishes(w, 1.0, ack=True) == []


def test_v5_disconnect_with_will_message_reason(raw):
    """MQTT 5 DISCONNECT reason 0x04 asks the server to publish the will anyway."""
    topic = f"will/{uid()}"
    w = watcher(raw, topic)
    c = raw(5)
    c.connect(uid("asks"), will=(topic, b"asked", 0, False))
    c.send(mqttraw.disconnect(5, reason=0x04))
    got = read_publishes(w, 2.0, expect=1, ack=True)
    assert [p.payload for p in got] == [b"asked"]


def test_will_closed_by_server_on_protocol_error(raw):
    """A connection the server closes for a protocol violation also publishes the will."""
    topic = f"will/{uid()}"
    w = watcher(raw, topic)
    c = raw(4)
    c.connect(uid("bad"), will=(topic, b"violated", 0, False))
    c.send(mqttraw.publish(f"{topic}/x", b"", qos=3))  # QoS 3: malformed [MQTT-3.3.1-4]
    assert c.is_closed(3)
    assert [p.payload for p in read_publishes(w, 1.5, expect=1, ack=True)] == [b"violated"]


def test_will_delay_interval(raw):
    topic = f"will/{uid()}"
    w = watcher(raw, topic)
    c = raw(5)
    c.connect(uid("delay"), clean=True, properties=[(mqttraw.P_SESSION_EXPIRY, 30)],
              will=(topic, b"late", 0, False, [(0x18, 2)]))  # will delay interval 2 s
    t0 = time.monotonic()
    c.abort()
    assert read_publishes(w, 1.0, ack=True) == [], "will sent before its delay"
    got = read_publishes(w, 3.0, expect=1, ack=True)
    elapsed = time.monotonic() - t0
    assert [p.payload for p in got] == [b"late"]
    assert elapsed >= 1.5


def test_will_delay_cancelled_by_reconnect(raw):
    topic = f"will/{uid()}"
    cid = uid("back")
    w = watcher(raw, topic)
    c = raw(5)
    c.connect(cid, clean=True, properties=[(mqttraw.P_SESSION_EXPIRY, 30)],
              will=(topic, b"late", 0, False, [(0x18, 2)]))
    c.abort()
    time.sleep(0.5)
    c2 = raw(5)
    ack = c2.connect(cid, clean=False, properties=[(mqttraw.P_SESSION_EXPIRY, 30)])
    assert ack.reason == 0 and ack.session_present is True
    assert read_publishes(w, 3.0, ack=True) == [], "will sent although the client came back within the delay"


def test_will_delay_capped_by_session_expiry(raw):
    """The will goes out when the session ends, even if the will delay is longer [MQTT-3.1.3-9]."""
    topic = f"will/{uid()}"
    w = watcher(raw, topic)
    c = raw(5)
    c.connect(uid("cap"), properties=[(mqttraw.P_SESSION_EXPIRY, 1)],
              will=(topic, b"capped", 0, False, [(0x18, 60)]))
    c.abort()
    got = read_publishes(w, 3.5, expect=1, ack=True)
    assert [p.payload for p in got] == [b"capped"]


@pytest.mark.parametrize("version", [4, 5])
def test_will_retained(raw, version):
    topic = f"will/{uid()}"
    c = raw(version)
    c.connect(uid("ret"), will=(topic, b"last-words", 1, True))
    c.abort()
    time.sleep(0.5)
    later = raw(version)
    later.connect(uid("late"))
    later.send(mqttraw.subscribe([(topic, 1)], version=version))
    later.expect(SUBACK)
    got = read_publishes(later, 1.5, expect=1, ack=True)
    assert [(p.payload, p.retain) for p in got] == [(b"last-words", True)]


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 closes on a second CONNECT but does not publish "
                         "the will; [MQTT-3.1.2-8] requires it when the server closes the "
                         "connection for a protocol error")
def test_will_on_second_connect_protocol_error(raw):
    topic = f"will/{uid()}"
    w = watcher(raw, topic)
    c = raw(4)
    c.connect(uid("twice"), will=(topic, b"twice", 0, False))
    c.send(mqttraw.connect("again"))
    assert c.is_closed(3)
    assert [p.payload for p in read_publishes(w, 1.5, expect=1, ack=True)] == [b"twice"]


@pytest.mark.parametrize("version", [4, 5])
def test_no_will_after_clean_disconnect_and_immediate_reconnect(raw, version):
    """A DISCONNECT (reason 0) sent before reconnecting never yields the will
    [MQTT-3.1.2-10]/[MQTT-3.14.4-3], even when the new CONNECT reaches the broker before it has
    read the old connection's DISCONNECT (issue 16 item 5: intermittent on a busy machine)."""
    topic = f"will/{uid()}"
    cid = uid("cycle")
    w = watcher(raw, topic)
    cycles = 200
    c = raw(version)
    assert c.connect(cid, will=(topic, b"gone", 1, False)).reason == 0
    for i in range(cycles):
        c.send(mqttraw.disconnect(version))
        c.close()
        c = raw(version)
        ack = c.connect(cid, will=(topic, b"gone", 1, False))
        assert ack.reason == 0, f"cycle {i}: {ack!r}"
    c.send(mqttraw.disconnect(version))
    c.close()
    wills = read_publishes(w, 2.0, ack=True, limit=cycles + 1)
    assert len(wills) == 0, f"{len(wills)} wills after {cycles} clean DISCONNECT + reconnect cycles"


@pytest.mark.parametrize("version", [4, 5])
def test_takeover_of_a_connection_that_did_not_disconnect_publishes_its_will(broker, raw, version):
    """The other side of the same race: a taken-over connection that sent no DISCONNECT still
    yields its will, and the new connection is admitted (and logged, as every connection is)."""
    topic = f"will/{uid()}"
    cid = uid("stale")
    w = watcher(raw, topic)
    old = raw(version)
    assert old.connect(cid, will=(topic, b"stale", 1, False)).reason == 0
    new = raw(version)
    assert new.connect(cid).reason == 0
    assert old.is_closed(3), "taken-over connection still open"
    got = read_publishes(w, 3.0, expect=1, ack=True)
    assert [p.payload for p in got] == [b"stale"]
    if IS_SLUICE:
        connected = [line for line in broker.log().splitlines() if f"client {cid} connected from" in line]
        assert len(connected) == 2, broker.log()


@pytest.mark.parametrize("version", [4, 5])
def test_retained_will_of_a_taken_over_connection_comes_before_the_new_connections_state(raw, version):
    """The common presence pattern (retained will "offline", retained "online" on connect) ends
    "online" after a takeover: the old connection's will never lands after the new one's messages."""
    topic = f"presence/{uid()}"
    cid = uid("presence")
    old = raw(version)
    assert old.connect(cid, will=(topic, b"offline", 1, True)).reason == 0
    new = raw(version)
    assert new.connect(cid, will=(topic, b"offline", 1, True)).reason == 0
    new.send(mqttraw.publish(topic, b"online", qos=1, retain=True, version=version))
    new.expect(mqttraw.PUBACK)
    late = raw(version)
    late.connect(uid("late"))
    late.send(mqttraw.subscribe([(topic, 1)], version=version))
    late.expect(SUBACK)
    got = read_publishes(late, 1.5, expect=1, ack=True)
    assert [(p.payload, p.retain) for p in got] == [(b"online", True)]
