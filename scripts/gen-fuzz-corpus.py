#!/usr/bin/env python3
"""Writes the MQTT seed corpus for the FuzzMQTTDecoder fuzz target into fixtures/fuzz/mqtt/.

One valid packet of each of the 15 packet types for each of MQTT 3.1, 3.1.1 and 5 where the type
exists (AUTH is MQTT 5 only), MQTT 5 ones with properties, built with Tests/IntegrationTests/mqttraw.py.
Each file starts with the version selector byte of Fuzz/Sources/FuzzMQTTDecoder (1 = 3.1,
2 = 3.1.1, 3 = 5; 0 = before CONNECT) followed by the packet bytes. The `stream-*` files use
selector 0: a CONNECT then a session's worth of packets, as a connection reads them.

Run from anywhere: python3 scripts/gen-fuzz-corpus.py (it rewrites the folder's *.bin files).
"""

from __future__ import annotations

import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "IntegrationTests"))
import mqttraw as m  # noqa: E402

OUT = ROOT / "fixtures" / "fuzz" / "mqtt"
SELECTOR = {3: 1, 4: 2, 5: 3}
NAME = {3: "v3.1", 4: "v3.1.1", 5: "v5"}

# A property of (almost) every kind, per packet that carries them.
USER = (0x26, ("origin", "fuzz-seed"))
PUBLISH_PROPS = [(m.P_PAYLOAD_FORMAT, 1), (m.P_MESSAGE_EXPIRY, 3600), (m.P_TOPIC_ALIAS, 3),
                 (0x08, "reply/here"), (0x09, b"\x01\x02corr"), (0x03, "text/plain"), USER]
CONNECT_PROPS = [(m.P_SESSION_EXPIRY, 120), (m.P_RECEIVE_MAXIMUM, 20), (m.P_MAXIMUM_PACKET_SIZE, 65536),
                 (m.P_TOPIC_ALIAS_MAXIMUM, 10), (0x19, 1), (0x17, 1), USER]
WILL_PROPS = [(0x18, 5), (m.P_PAYLOAD_FORMAT, 1), (m.P_MESSAGE_EXPIRY, 60), (0x03, "text/plain"), USER]
CONNACK_PROPS = [(m.P_SESSION_EXPIRY, 120), (m.P_RECEIVE_MAXIMUM, 100), (0x24, 1), (0x25, 1),
                 (m.P_MAXIMUM_PACKET_SIZE, 1 << 20), (m.P_ASSIGNED_CLIENT_ID, "auto-1"),
                 (m.P_TOPIC_ALIAS_MAXIMUM, 10), (m.P_REASON_STRING, "welcome"), (0x28, 1), (0x29, 1),
                 (0x2A, 1), (m.P_SERVER_KEEP_ALIVE, 30), USER]
ACK_PROPS = [(m.P_REASON_STRING, "ok"), USER]


def connect(version: int) -> bytes:
    """CONNECT with clean session, a will, a user name and a password (and properties in 5)."""
    name = b"MQIsdp" if version == 3 else b"MQTT"
    flags = 0x02 | 0x04 | (1 << 3) | 0x20 | 0x80 | 0x40
    vh = m.mqtt_str(name) + bytes([version, flags]) + struct.pack("!H", 60)
    if version == 5:
        vh += m.props(CONNECT_PROPS)
    payload = m.mqtt_str("seed-client")
    if version == 5:
        payload += m.props(WILL_PROPS)
    payload += m.mqtt_str("will/topic") + m.mqtt_str(b"gone") + m.mqtt_str("user") + m.mqtt_str(b"secret")
    return m.packet(m.CONNECT, 0, vh + payload)


def v5_props(version: int, pairs) -> bytes:
    return m.props(pairs) if version == 5 else b""


def packets(version: int) -> dict[str, bytes]:
    v5 = version == 5
    pid = struct.pack("!H", 7)
    out = {
        "01-connect": connect(version),
        "02-connack": m.packet(m.CONNACK, 0, bytes([0x01 if version > 3 else 0, 0]) + v5_props(version, CONNACK_PROPS)),
        "03-publish-qos0": m.publish("sensors/a", b"21.5", version=version,
                                     properties=PUBLISH_PROPS if v5 else None),
        "03-publish-qos1-retain": m.publish("sensors/b", b"\x00\xff", qos=1, retain=True, packet_id=7,
                                            version=version, properties=[USER] if v5 else None),
        "03-publish-qos2-dup": m.publish("sensors/c", b"x" * 40, qos=2, dup=True, packet_id=8, version=version,
                                         properties=[(0x0B, 300)] if v5 else None),
        "12-pingreq": m.packet(m.PINGREQ, 0, b""),
        "13-pingresp": m.packet(m.PINGRESP, 0, b""),
    }
    for ptype, name, flags in [(m.PUBACK, "04-puback", 0), (m.PUBREC, "05-pubrec", 0),
                               (m.PUBREL, "06-pubrel", 2), (m.PUBCOMP, "07-pubcomp", 0)]:
        out[name] = m.packet(ptype, flags, pid)
        if v5:
            reason = 0x92 if ptype in (m.PUBREL, m.PUBCOMP) else 0x10
            out[name + "-reason-props"] = m.packet(ptype, flags, pid + bytes([reason]) + m.props(ACK_PROPS))
    # MQTT 5 options: retain as published and retain handling 1 on the shared one, no local on a/b
    # (no local on a shared subscription is a protocol error [MQTT-3.8.3-4]).
    sub_opts = [("sensors/#", 1), ("$share/g/cmd/+", 2 | (0x08 | 0x10 if v5 else 0)), ("a/b", 0x04 if v5 else 0)]
    out["08-subscribe"] = m.subscribe(sub_opts, packet_id=7, version=version,
                                      properties=[(0x0B, 42), USER] if v5 else None)
    out["09-suback"] = m.packet(m.SUBACK, 0, pid + v5_props(version, ACK_PROPS) +
                                bytes([1, 2, 0x80 if not v5 else 0x87]))
    out["10-unsubscribe"] = m.packet(m.UNSUBSCRIBE, 2, pid + v5_props(version, [USER]) +
                                     m.mqtt_str("sensors/#") + m.mqtt_str("a/b"))
    out["11-unsuback"] = m.packet(m.UNSUBACK, 0, pid + (m.props(ACK_PROPS) + bytes([0x00, 0x11]) if v5 else b""))
    out["14-disconnect"] = m.disconnect(version)
    if v5:
        out["14-disconnect-reason-props"] = m.packet(
            m.DISCONNECT, 0, bytes([0x04]) + m.props([(m.P_SESSION_EXPIRY, 0), (m.P_REASON_STRING, "bye"), USER]))
        out["15-auth"] = m.packet(m.AUTH, 0, bytes([0x18]) + m.props(
            [(0x15, "SCRAM-SHA-1"), (0x16, b"\x00client-first"), (m.P_REASON_STRING, "more"), USER]))
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.bin"):
        old.unlink()
    for version in (3, 4, 5):
        all_packets = packets(version)
        for name, data in all_packets.items():
            (OUT / f"{NAME[version]}-{name}.bin").write_bytes(bytes([SELECTOR[version]]) + data)
        # Before CONNECT (selector 0): a CONNECT followed by a session's packets.
        stream = b"".join(data for name, data in sorted(all_packets.items()) if not name.startswith("02"))
        (OUT / f"stream-{NAME[version]}.bin").write_bytes(bytes([0]) + stream)
    print(f"wrote {len(list(OUT.glob('*.bin')))} files to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
