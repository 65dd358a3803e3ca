"""QoS flows: redelivery with DUP, QoS 2 exactly-once, overlapping subscriptions, downgrade."""

import time

import pytest

import mqttraw
from mqttraw import PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK
from conftest import uid


def sub_raw(raw, cid, topics, version=4, clean=False, props=None):
    c = raw(version)
    ack = c.connect(cid, clean=clean, properties=props)
    assert ack.reason == 0
    c.send(mqttraw.subscribe(topics, version=version))
    c.expect(SUBACK)
    return c, ack


def publisher(raw, version=4):
    p = raw(version)
    p.connect(uid("pub"))
    return p


def publish_done(p, topic, payload, qos, packet_id=1, version=4, **kw):
    """Publish and complete the publisher's side of the flow (QoS 2: through PUBCOMP).

    A broker may hold a QoS 2 message until PUBREL (spec method B), so tests finish the flow
    before they look for the delivery."""
    p.send(mqttraw.publish(topic, payload, qos=qos, packet_id=packet_id, version=version, **kw))
    if qos == 1:
        assert p.expect(PUBACK).packet_id == packet_id
    elif qos == 2:
        assert p.expect(PUBREC).packet_id == packet_id
        p.send(mqttraw.ack(PUBREL, packet_id))
        assert p.expect(PUBCOMP).packet_id == packet_id


def collect(c, quiet=0.6, limit=100):
    """Read packets until `quiet` seconds pass with nothing; returns them."""
    got = []
    for _ in range(limit):
        try:
            got.append(c.read_packet(quiet))
        except TimeoutError:
            break
    return got


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [1, 2])
def test_unacked_publish_redelivered_with_dup(raw, version, qos):
    cid = uid("dup")
    topic = f"qos/{uid()}"
    props = [(mqttraw.P_SESSION_EXPIRY, 60)] if version == 5 else None
    s, _ = sub_raw(raw, cid, [(topic, qos)], version, props=props)
    p = publisher(raw)
    publish_done(p, topic, b"payload-1", qos, 11)
    first = s.expect(PUBLISH)
    assert (first.payload, first.qos, first.dup) == (b"payload-1", qos, False)
    s.abort()  # no PUBACK/PUBREC: the message stays unacknowledged
    time.sleep(0.2)
    s2 = raw(version)
    ack = s2.connect(cid, clean=False, properties=props)
    assert ack.session_present is True
    again = s2.expect(PUBLISH)
    assert again.payload == b"payload-1"
    assert again.qos == qos
    assert again.dup is True, "redelivered PUBLISH must have DUP set [MQTT-4.4.0-1]"
    # Complete the flow; afterwards nothing more comes.
    if qos == 1:
        s2.send(mqttraw.ack(PUBACK, again.packet_id))
    else:
        s2.send(mqttraw.ack(PUBREC, again.packet_id))
        rel = s2.expect(PUBREL)
        assert rel.packet_id == again.packet_id
        s2.send(mqttraw.ack(PUBCOMP, again.packet_id))
    assert collect(s2, 0.5) == []
    s2.send(mqttraw.disconnect())
    s2.close()
    time.sleep(0.2)
    s3 = raw(version)
    s3.connect(cid, clean=False, properties=props)
    assert [x for x in collect(s3, 0.5) if x.ptype == PUBLISH] == []


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_pubrel_resent_after_reconnect(raw, version):
    """After PUBREC, a reconnecting client gets PUBREL again, not the PUBLISH [MQTT-4.4.0-1]."""
    cid = uid("rel")
    topic = f"qos/{uid()}"
    props = [(mqttraw.P_SESSION_EXPIRY, 60)] if version == 5 else None
    s, _ = sub_raw(raw, cid, [(topic, 2)], version, props=props)
    p = publisher(raw)
    publish_done(p, topic, b"two", 2, 3)
    m = s.expect(PUBLISH)
    s.send(mqttraw.ack(PUBREC, m.packet_id))
    s.expect(PUBREL)
    s.abort()
    time.sleep(0.2)
    s2 = raw(version)
    s2.connect(cid, clean=False, properties=props)
    got = collect(s2, 0.6)
    assert [x.ptype for x in got] == [PUBREL], got
    assert got[0].packet_id == m.packet_id
    s2.send(mqttraw.ack(PUBCOMP, m.packet_id))
    assert collect(s2, 0.4) == []


def test_qos2_inbound_duplicate_delivered_once(raw):
    """A publisher resending a QoS 2 PUBLISH (DUP) before PUBREL: subscribers get it once."""
    topic = f"qos/{uid()}"
    s, _ = sub_raw(raw, uid("s"), [(topic, 2)], clean=True)
    p = publisher(raw)
    p.send(mqttraw.publish(topic, b"once", qos=2, packet_id=9))
    assert p.expect(PUBREC).packet_id == 9
    p.send(mqttraw.publish(topic, b"once", qos=2, packet_id=9, dup=True))
    assert p.expect(PUBREC).packet_id == 9
    p.send(mqttraw.ack(PUBREL, 9))
    assert p.expect(PUBCOMP).packet_id == 9
    got = []
    for pkt in collect(s, 0.6):
        if pkt.ptype == PUBLISH:
            got.append(pkt.payload)
            s.send(mqttraw.ack(PUBREC, pkt.packet_id))
        elif pkt.ptype == PUBREL:
            s.send(mqttraw.ack(PUBCOMP, pkt.packet_id))
    assert got == [b"once"]


@pytest.mark.parametrize("pub_qos,sub_qos", [(2, 1), (2, 0), (1, 0), (1, 2), (0, 2)])
def test_qos_downgraded_to_subscription(raw, pub_qos, sub_qos):
    topic = f"qos/{uid()}"
    s, _ = sub_raw(raw, uid("s"), [(topic, sub_qos)], clean=True)
    p = publisher(raw)
    publish_done(p, topic, b"x", pub_qos, 1)
    m = s.expect(PUBLISH)
    assert m.qos == min(pub_qos, sub_qos)


def _count_overlapping(raw, version):
    base = f"ovl/{uid()}"
    s, _ = sub_raw(raw, uid("ovl"), [(f"{base}/#", 2), (f"{base}/+", 1), (f"{base}/x", 0)],
                   version, clean=True)
    p = publisher(raw)
    publish_done(p, f"{base}/x", b"o", 2, 2)
    pubs = []
    for pkt in collect(s, 0.7):
        if pkt.ptype == PUBLISH:
            pubs.append(pkt)
            if pkt.qos == 1:
                s.send(mqttraw.ack(PUBACK, pkt.packet_id))
            elif pkt.qos == 2:
                s.send(mqttraw.ack(PUBREC, pkt.packet_id))
        elif pkt.ptype == PUBREL:
            s.send(mqttraw.ack(PUBCOMP, pkt.packet_id))
    return pubs


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 delivers one copy to a 3.1.1 client with "
                         "overlapping subscriptions but at the QoS of one arbitrary matching "
                         "subscription (observed: QoS 0 where QoS 2 was granted), violating "
                         "[MQTT-3.3.5-1]; the issue wants one copy at the maximum granted QoS")
def test_overlapping_subscriptions_one_copy_max_qos_v311(raw):
    pubs = _count_overlapping(raw, 4)
    assert [(m.payload, m.qos) for m in pubs] == [(b"o", 2)]


def test_overlapping_subscriptions_max_qos_v5(raw):
    """MQTT 5 [MQTT-3.3.4-2] allows one copy per subscription, but the maximum QoS must be used."""
    pubs = _count_overlapping(raw, 5)
    assert pubs and all(m.payload == b"o" for m in pubs)
    assert max(m.qos for m in pubs) == 2
    assert len(pubs) <= 3
