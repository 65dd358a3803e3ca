"""Issue 13, case 3: topics and client ids of any legal length are kept across a restart. A retained
message on a 600-byte and on a 65,535-byte topic, and a persistent session with a 600-byte client id
holding 50 acknowledged QoS 1 messages, all come back after a graceful restart and after kill -9
(LMDB keys end at 511 bytes; Sluice used to log "not saved: a ... key of 610 bytes" and lose them).
The graceful case runs the same against Mosquitto, which keeps them too."""

from __future__ import annotations

import pytest

import mqttraw
from mqttraw import PUBACK, PUBLISH, SUBACK
from conftest import uid

CLIENT_ID = "c" * 590 + uid("")[-10:]  # 600 bytes, unique per run
TOPICS = {
    "long/" + "x" * 595: b"retained on a 600-byte topic",
    "r/" + "y" * 65_533: b"retained on a 65,535-byte topic",
}


def publish_acknowledged(c: mqttraw.RawClient, topic: str, payload: bytes, packet_id: int, retain=False):
    c.send(mqttraw.publish(topic, payload, qos=1, retain=retain, packet_id=packet_id))
    ack = c.expect(PUBACK, timeout=10)
    assert ack.packet_id == packet_id


def restart(broker, how: str):
    if how == "kill":
        broker.kill()
        broker.start()
    else:
        broker.restart()


@pytest.mark.parametrize("how", ["graceful", pytest.param("kill", marks=pytest.mark.sluice_only(
    "Mosquitto writes its store only at autosave_interval and shutdown: kill -9 loses what it acknowledged"))])
def test_long_topics_and_client_id_survive_a_restart(broker, how):
    client_id = CLIENT_ID.replace("c", how[0], 1)
    with mqttraw.RawClient(broker.host, broker.port) as keeper:
        assert keeper.connect(client_id, clean=False).reason == 0
        keeper.send(mqttraw.subscribe([("queued/#", 1)]))
        keeper.expect(SUBACK)
    with mqttraw.RawClient(broker.host, broker.port) as pub:
        pub.connect(uid("pub"))
        for n, (topic, payload) in enumerate(TOPICS.items(), start=1):
            publish_acknowledged(pub, topic, payload, n, retain=True)
        for n in range(1, 51):
            publish_acknowledged(pub, f"queued/{n}", f"m{n}".encode(), 100 + n)

    restart(broker, how)

    for topic, payload in TOPICS.items():
        with mqttraw.RawClient(broker.host, broker.port) as reader:
            reader.connect(uid("reader"))
            reader.send(mqttraw.subscribe([(topic, 0)]))
            reader.expect(SUBACK)
            got = reader.expect(PUBLISH, timeout=5)
            assert (got.topic, got.payload, got.retain) == (topic, payload, True)
    with mqttraw.RawClient(broker.host, broker.port) as keeper:
        ack = keeper.connect(client_id, clean=False)
        assert ack.session_present
        received = []
        for _ in range(50):
            p = keeper.expect(PUBLISH, timeout=10)
            received.append(p.payload.decode())
            keeper.send(mqttraw.ack(PUBACK, p.packet_id))
        assert received == [f"m{n}" for n in range(1, 51)]
    assert "not saved" not in broker.log()
