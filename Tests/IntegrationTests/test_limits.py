"""Limits: queued messages per offline client, maximum connections."""

import socket
import time

import pytest

import mqttraw
from mqttraw import CONNACK, DISCONNECT, PUBACK, PUBLISH, SUBACK
from conftest import assert_serving, uid


@pytest.mark.parametrize("version", [4, 5])
def test_max_queued_messages(start_broker, version):
    b = start_broker("max_queued_messages 10")
    cid = uid("queue")
    topic = f"lim/{uid()}"
    props = [(mqttraw.P_SESSION_EXPIRY, 60)] if version == 5 else None
    with mqttraw.RawClient(b.host, b.port, version=version) as s:
        s.connect(cid, clean=False, properties=props)
        s.send(mqttraw.subscribe([(topic, 1)], version=version))
        s.expect(SUBACK)
        s.send(mqttraw.disconnect(version))
    time.sleep(0.2)
    with mqttraw.RawClient(b.host, b.port, version=version) as p:
        p.connect(uid("pub"))
        for i in range(20):
            p.send(mqttraw.publish(topic, str(i).encode(), qos=1, packet_id=i + 1,
                                   version=version))
            p.expect(PUBACK)
    with mqttraw.RawClient(b.host, b.port, version=version) as s:
        ack = s.connect(cid, clean=False, properties=props)
        assert ack.session_present is True
        got = []
        for _ in range(40):
            try:
                pkt = s.read_packet(0.8)
            except TimeoutError:
                break
            if pkt.ptype == PUBLISH:
                got.append(int(pkt.payload))
                s.send(mqttraw.ack(PUBACK, pkt.packet_id))
        # At most 10 were kept, and what was kept comes in publication order without repeats.
        assert 1 <= len(got) <= 10, f"{len(got)} queued messages delivered: {got}"
        assert got == sorted(set(got)) and set(got) <= set(range(20))
        assert len(got) == 10, f"the queue should have been filled to its bound: {got}"
        # Once online again, live traffic flows.
        s.send(mqttraw.publish(topic, b"99", qos=1, packet_id=1, version=version))
        seen = []
        for _ in range(5):
            pkt = s.read_packet(2)
            if pkt.ptype == PUBLISH:
                seen.append(pkt.payload)
                s.send(mqttraw.ack(PUBACK, pkt.packet_id))
                break
        assert seen == [b"99"]


def _try_connect(b, version):
    """Returns ('connack', reason) or ('closed', None)."""
    c = mqttraw.RawClient(b.host, b.port, version=version, timeout=3)
    try:
        c.send(mqttraw.connect(uid("extra"), version=version))
        try:
            p = c.read_packet(3)
        except mqttraw.Closed:
            return ("closed", None), c
        assert p.ptype in (CONNACK, DISCONNECT), p
        return ("connack", p.reason), c
    except (ConnectionResetError, BrokenPipeError):
        return ("closed", None), c


@pytest.mark.parametrize("version", [4, 5])
def test_max_connections(start_broker, version):
    b = start_broker("max_connections 3")
    clients = []
    try:
        for _ in range(3):
            c = mqttraw.RawClient(b.host, b.port, version=version)
            assert c.connect(uid("c"), version=version).reason == 0
            clients.append(c)
        (kind, reason), extra = _try_connect(b, version)
        if kind == "connack":
            # v5: 0x97 Quota exceeded; 3.1.1: 0x03 Server unavailable. Or just close.
            allowed = {0x97} if version == 5 else {0x03}
            assert reason in allowed, f"4th connection got CONNACK {reason:#x}"
            assert extra.is_closed(3)
        extra.close()
        # The existing connections keep working.
        topic = f"lim/{uid()}"
        clients[0].send(mqttraw.subscribe([(topic, 0)], version=version))
        clients[0].expect(SUBACK)
        for c in clients:
            c.send(mqttraw.PINGREQ_BYTES)
            c.expect(mqttraw.PINGRESP)
        clients[1].send(mqttraw.publish(topic, b"still-here", version=version))
        assert clients[0].expect(PUBLISH).payload == b"still-here"
        # Freeing a slot lets a new client in (bounded retries while the broker notices).
        clients.pop().close()
        for _ in range(20):
            time.sleep(0.1)
            (kind, reason), extra = _try_connect(b, version)
            extra.close()
            if kind == "connack" and reason == 0:
                break
        else:
            raise AssertionError("no connection accepted after a slot was freed")
    finally:
        for c in clients:
            c.close()
