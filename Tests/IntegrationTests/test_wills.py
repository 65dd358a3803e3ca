"""Will messages: abnormal vs clean disconnect, MQTT 5 will delay, retained wills."""

import time

import pytest

import mqttraw
from mqttraw import PUBLISH, SUBACK
from mqttraw import read_publishes
from conftest import uid


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
