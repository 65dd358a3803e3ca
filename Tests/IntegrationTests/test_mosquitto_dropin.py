"""Mosquitto habits the broker under test keeps (issue 16); each test also runs against Mosquitto
(SLUICE_TEST_BROKER=mosquitto) to show the behaviour matches.

A Mosquitto bridge connecting to the broker (bug 9): Mosquitto's bridge announces itself with `try_private true` (its default): protocol level 0x84 (3.1.1) or 0x83
(3.1). Mosquitto accepts it and gives the bridge's subscriptions no-local and retain-as-published, so a `both`
rule does not echo messages back. Sluice answered CONNACK 1 and the bridge never connected. The same test runs
against Mosquitto (SLUICE_TEST_BROKER=mosquitto) to show the behaviour matches."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

import mqttraw
from conftest import PahoClient, free_port, port_listening, uid


@pytest.fixture
def mosquitto_edge(tmp_path):
    """Factory: a Debian mosquitto bridged to `port` with `topic t/# both 1`; returns its port."""
    procs: list[subprocess.Popen] = []

    def _start(port: int, protocol: str) -> int:
        edge_port = free_port()
        conf = tmp_path / f"edge{len(procs)}.conf"
        conf.write_text(f"listener {edge_port} 127.0.0.1\nallow_anonymous true\nuser root\n"
                        f"connection tocentral\naddress 127.0.0.1:{port}\ntopic t/# both 1\n"
                        f"try_private true\nbridge_protocol_version {protocol}\nrestart_timeout 1\n"
                        f"notifications false\ncleansession true\n")
        log = open(tmp_path / f"edge{len(procs)}.log", "wb")
        procs.append(subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 10
        while not port_listening(edge_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return edge_port

    yield _start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


@pytest.mark.parametrize("protocol", ["mqttv311", "mqttv31"])
def test_mosquitto_bridge_with_try_private_connects_and_does_not_echo(broker, mosquitto_edge, protocol):
    edge = type("Edge", (), {"host": "127.0.0.1", "port": mosquitto_edge(broker.port, protocol)})()
    central_sub = PahoClient(broker, uid("csub")).connect()
    central_sub.subscribe("t/#", qos=1)
    edge_sub = PahoClient(edge, uid("esub")).connect()
    edge_sub.subscribe("t/#", qos=1)
    # The bridge is up once a probe from the central reaches the edge's subscriber.
    central_pub = PahoClient(broker, uid("cpub")).connect()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not edge_sub.collector.payloads():
        central_pub.publish("t/probe", b"probe", qos=1)
        time.sleep(0.3)
    assert edge_sub.collector.payloads(), f"the Mosquitto bridge never connected\n{broker.log()[-2000:]}"
    edge_sub.collector.settle(1.0)
    central_sub.collector.settle(0.5)

    edge_pub = PahoClient(edge, uid("epub")).connect()
    edge_pub.publish("t/from-edge", b"e1", qos=1)
    central_pub.publish("t/from-central", b"c1", qos=1)
    central_sub.collector.settle(1.5)
    edge_sub.collector.settle(1.5)
    at_central = [p for p in central_sub.collector.payloads() if p in (b"e1", b"c1")]
    at_edge = [p for p in edge_sub.collector.payloads() if p in (b"e1", b"c1")]
    # Each once on each side: without no-local the central sends e1 back over the bridge and the edge's
    # subscriber sees it twice.
    assert sorted(at_central) == [b"c1", b"e1"], at_central
    assert sorted(at_edge) == [b"c1", b"e1"], at_edge


def test_connack_properties_come_in_mosquittos_order(start_broker):
    """MQTT allows any order; rigs and captures that compare bytes with Mosquitto's expect its order (item 16)."""
    b = start_broker("max_keepalive 30\nmax_packet_size 1000\nmax_inflight_messages 10\n")
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + b"\x00\x00"  # keep alive 60, no properties, empty id
        s.sendall(bytes([0x10, len(body)]) + body)
        data = b""
        while len(data) < 2 or len(data) < 2 + data[1]:
            chunk = s.recv(256)
            assert chunk, f"closed before a CONNACK: {data.hex()}"
            data += chunk
    assert data[0] == 0x20 and data[3] == 0, data.hex()
    props, i, ids = data[5:2 + data[1]], 0, []
    sizes = {0x22: 2, 0x13: 2, 0x21: 2, 0x27: 4, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1}
    while i < len(props):
        pid = props[i]
        ids.append(pid)
        i += 1 + (sizes[pid] if pid in sizes else 2 + int.from_bytes(props[i + 1:i + 3], "big"))
    # Topic Alias Maximum, Server Keep Alive, Assigned Client Identifier, Maximum Packet Size, Receive Maximum.
    assert ids == [0x22, 0x13, 0x12, 0x27, 0x21], [hex(x) for x in ids]


def _connect_v5_raw(port: int, maximum_packet_size: int, client_id: bytes = b"") -> bytes:
    """A raw MQTT 5 CONNECT with a Maximum Packet Size; returns what the broker sent before closing."""
    props = bytes([0x27]) + maximum_packet_size.to_bytes(4, "big")
    body = b"\x00\x04MQTT\x05\x02\x00\x3c" + bytes([len(props)]) + props + len(client_id).to_bytes(2, "big") + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(bytes([0x10, len(body)]) + body)
        data = b""
        while chunk := s.recv(256):  # the test fails by timeout if the broker neither answers nor closes
            data += chunk
            if len(data) >= 2 and len(data) >= 2 + data[1]:
                break
        return data


def test_connack_larger_than_the_clients_maximum_packet_size_is_not_sent(start_broker):
    """[MQTT-3.1.2-24] (item 6): a client whose limit cannot hold the CONNACK (here: the assigned client
    identifier alone is longer) is closed without one, as Mosquitto does; a limit that fits gets it."""
    b = start_broker()
    assert _connect_v5_raw(b.port, 10) == b""
    ack = _connect_v5_raw(b.port, 1000)
    assert ack[:1] == b"\x20" and ack[3] == 0, ack.hex()


@pytest.mark.parametrize("version", [4, 5])
def test_message_size_limit_is_a_payload_limit(start_broker, version):
    """message_size_limit (bug 2): a 30-byte CONNECT passes a 10-byte limit; a larger QoS 1 payload is
    acknowledged (3.1.1) or refused with 0x95 (5) and dropped, and the client stays connected; a larger will
    payload refuses the CONNECT (CONNACK 5 / 0x95). As Mosquitto does."""
    b = start_broker("message_size_limit 10")
    sub = PahoClient(b, uid("sub"), v5=version == 5).connect()
    sub.subscribe("size/#", qos=1)
    c = mqttraw.RawClient("127.0.0.1", b.port, version=version)
    assert c.connect(uid("small")).reason == 0
    c.send(mqttraw.publish("size/big", b"Z" * 11, qos=1, packet_id=7, version=version))
    ack = c.expect(mqttraw.PUBACK)
    assert ack.reason == (0x95 if version == 5 else 0), ack
    c.send(mqttraw.publish("size/ok", b"Z" * 10, qos=1, packet_id=8, version=version))
    assert c.expect(mqttraw.PUBACK).reason == 0
    c.close()
    assert sub.collector.wait_for(1, 5) and sub.collector.settle(0.5)
    assert [m.topic for m in sub.collector.messages] == ["size/ok"]
    w = mqttraw.RawClient("127.0.0.1", b.port, version=version)
    refused = w.connect(uid("will"), will=("size/will", b"W" * 11, 1, False))
    assert refused.reason == (0x95 if version == 5 else 5), refused
    w.close()
