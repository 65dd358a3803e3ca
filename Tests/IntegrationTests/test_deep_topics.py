"""Issue 13, case 7: topics and filters of up to 65,535 levels (the deepest a 65,535-byte string can
be) are refused cleanly, never by a crash, and every other client keeps being served; a persistent
session that tried one survives a restart. Default limit: 201 levels, as Mosquitto 2.0.11 (measured:
it accepts 200 '/' separators and refuses 201).

Where the brokers differ, both behaviours are asserted: Sluice answers a too-deep SUBSCRIBE with a
failure code for that filter (0x80; MQTT 5: 0x8F Topic Filter invalid) and an MQTT 5 QoS 1 PUBLISH
with PUBACK 0x90 Topic Name invalid, keeping the connection; Mosquitto 2.0.11 disconnects (MQTT 5:
DISCONNECT 0x81 for SUBSCRIBE, 0x82 for PUBLISH). A 3.1.1 PUBLISH cannot be refused: both close."""

from __future__ import annotations

import pytest

import mqttraw
from mqttraw import PUBACK, PUBLISH, SUBACK
from conftest import IS_SLUICE, assert_serving, uid


def deep(levels: int) -> str:
    return "/" * (levels - 1)


def suback_codes(pkt: mqttraw.Packet, version: int) -> list[int]:
    body = pkt.body[2:]
    if version == 5:
        n, i = mqttraw._read_varint(body, 0)
        body = body[i + n:]
    return list(body)


@pytest.fixture
def watcher(broker):
    """A client subscribed to `watch/#` before the abuse: it must keep getting its messages."""
    c = mqttraw.RawClient(broker.host, broker.port, version=5)
    c.connect(uid("watcher"), version=5)
    c.send(mqttraw.subscribe([("watch/#", 1)], version=5))
    c.expect(SUBACK)
    yield c
    c.close()


def watcher_still_served(broker, watcher):
    with mqttraw.RawClient(broker.host, broker.port, version=4) as p:
        p.connect(uid("pub"), version=4)
        p.send(mqttraw.publish("watch/x", b"still here", qos=1, packet_id=3))
        p.expect(PUBACK)
    got = watcher.expect(PUBLISH, timeout=5)
    assert got.payload == b"still here"
    watcher.send(mqttraw.ack(PUBACK, got.packet_id))
    assert_serving(broker)


@pytest.mark.parametrize("levels", [202, 65_535])
@pytest.mark.parametrize("version", [4, 5])
def test_too_deep_subscribe_is_refused(broker, raw, watcher, version, levels):
    c = raw(version=version)
    c.connect(uid("deep-sub"), version=version)
    c.send(mqttraw.subscribe([(deep(levels), 1), ("ok/" + uid(), 1)], version=version))
    if IS_SLUICE:
        codes = suback_codes(c.expect(SUBACK), version)
        assert codes == [0x8F if version == 5 else 0x80, 0x01]
        assert not c.is_closed(0.5)
    else:
        got = c.read_until_close(timeout=5)
        assert [p.reason for p in got if p.ptype == mqttraw.DISCONNECT] == ([0x81] if version == 5 else [])
    watcher_still_served(broker, watcher)


@pytest.mark.parametrize("levels", [202, 65_535])
@pytest.mark.parametrize("version", [4, 5])
def test_too_deep_publish_is_refused(broker, raw, watcher, version, levels):
    listener = raw(version=4)
    listener.connect(uid("all"), version=4)
    listener.send(mqttraw.subscribe([("#", 1)], version=4))
    listener.expect(SUBACK)
    c = raw(version=version)
    c.connect(uid("deep-pub"), version=version)
    c.send(mqttraw.publish(deep(levels), b"too deep", qos=1, packet_id=9, version=version))
    if IS_SLUICE and version == 5:
        ack = c.expect(PUBACK)
        assert (ack.packet_id, ack.reason) == (9, 0x90)
        assert not c.is_closed(0.5)
    else:
        got = c.read_until_close(timeout=5)
        expected = ([0x82] if not IS_SLUICE else []) if version == 5 else []
        assert [p.reason for p in got if p.ptype == mqttraw.DISCONNECT] == expected
        assert not [p for p in got if p.ptype == PUBACK]
    # Nobody received it, not even a '#' subscriber.
    with pytest.raises(TimeoutError):
        while True:
            p = listener.read_packet(0.5)
            assert p.ptype != PUBLISH or p.payload != b"too deep", p
    watcher_still_served(broker, watcher)


def test_the_deepest_accepted_topic_is_delivered(broker, raw):
    """201 levels (200 '/') pass on both brokers."""
    c = raw(version=5)
    c.connect(uid("deep-ok"), version=5)
    c.send(mqttraw.subscribe([(deep(201), 1)], version=5))
    assert suback_codes(c.expect(SUBACK), 5) == [0x01]
    c.send(mqttraw.publish(deep(201), b"deep enough", qos=1, packet_id=2, version=5))
    seen = [c.read_packet(5), c.read_packet(5)]
    assert sorted(p.ptype for p in seen) == [PUBLISH, PUBACK]
    assert [p.payload for p in seen if p.ptype == PUBLISH] == [b"deep enough"]


def test_persistent_session_with_a_deep_subscribe_survives_restarts(broker, raw):
    client_id = uid("deep-keeper")
    c = raw(version=4)
    c.connect(client_id, version=4, clean=False)
    c.send(mqttraw.subscribe([(deep(65_535), 1), ("keep/me", 1)], version=4))
    if IS_SLUICE:
        assert suback_codes(c.expect(SUBACK), 4) == [0x80, 0x01]
    else:
        c.read_until_close(timeout=2)
    c.close()
    for _ in range(2):
        broker.restart()
        assert_serving(broker)
        with mqttraw.RawClient(broker.host, broker.port, version=4) as again:
            assert again.connect(client_id, version=4, clean=False).session_present


@pytest.mark.sluice_only("max_topic_levels is Sluice's key; Mosquitto's limit is compiled in")
def test_65535_levels_are_matched_when_the_limit_allows(start_broker):
    """With the limit raised to the protocol's maximum, a 65,535-level subscription and publish are
    matched and delivered (a recursive walk crashed at 16,000 levels in a debug build), and the
    session holding that subscription comes back after a restart."""
    b = start_broker("max_topic_levels 65535")
    topic = deep(65_535)
    client_id = uid("deepest")
    with mqttraw.RawClient(b.host, b.port, version=5) as c:
        c.connect(client_id, version=5, clean=False, properties=[(mqttraw.P_SESSION_EXPIRY, 3600)])
        c.send(mqttraw.subscribe([(topic, 1), ("+/" * 32_000 + "#", 1)], version=5))
        assert suback_codes(c.expect(SUBACK), 5) == [0x01, 0x01]
        c.send(mqttraw.publish(topic, b"deepest", qos=1, packet_id=2, version=5))
        seen = [c.read_packet(10), c.read_packet(10)]
        assert sorted(p.ptype for p in seen) == [PUBLISH, PUBACK]
        assert [p.payload for p in seen if p.ptype == PUBLISH] == [b"deepest"]
        c.send(mqttraw.ack(PUBACK, next(p.packet_id for p in seen if p.ptype == PUBLISH)))
        assert not c.is_closed(0.5)
    b.restart()
    with mqttraw.RawClient(b.host, b.port, version=5) as c:
        assert c.connect(client_id, version=5, clean=False,
                         properties=[(mqttraw.P_SESSION_EXPIRY, 3600)]).session_present
        with mqttraw.RawClient(b.host, b.port, version=4) as p:
            p.connect(uid("pub"), version=4)
            p.send(mqttraw.publish(topic, b"after restart", qos=1, packet_id=3))
            p.expect(PUBACK)
        got = c.expect(PUBLISH, timeout=10)
        assert got.payload == b"after restart"
    assert_serving(b)
