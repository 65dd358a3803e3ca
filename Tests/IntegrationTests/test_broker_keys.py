"""Broker-side Mosquitto keys honoured with Mosquitto's meaning (issue 16): log_timestamp(_format),
use_username_as_clientid, use_subject_as_username, upgrade_outgoing_qos, max_inflight_bytes and
check_retain_source. Each test also runs against Debian's mosquitto (SLUICE_TEST_BROKER=mosquitto) to
show the behaviour matches; where the lines differ by design (Sluice's level word), the test says so."""

from __future__ import annotations

import datetime
import re
import signal
import struct
import subprocess
import time

import pytest

import mqttraw
from bridgeharness import wait_until
from conftest import IS_SLUICE, REPO, PahoClient, free_port, uid

TLS = REPO / "fixtures" / "tls"

STAMPED_EPOCH = re.compile(r"^\d{9,}: ")  # Mosquitto's default stamp, `1700000000: `


def line_with(log: str, needle: str) -> str:
    found = [line for line in log.splitlines() if needle in line]
    assert found, f"no line with {needle!r} in the log:\n{log[-3000:]}"
    return found[0]


def connect_line(b, client: str) -> str:
    """The log line of a client's connect, once it is there (Sluice: `client X connected from`,
    Mosquitto: `New client connected from ... as X`)."""
    assert wait_until(lambda: client in b.log(), 5), b.log()[-3000:]
    return line_with(b.log(), client)


# --------------------------------------------------------------------------- log_timestamp(_format)

def test_log_timestamp_format_is_strftime_then_colon(start_broker):
    b = start_broker("log_timestamp_format %Y-%m-%dT%H:%M:%S\nlog_type all\n", persistence=False)
    client = uid("stamp")
    with mqttraw.RawClient(b.host, b.port) as c:
        assert c.connect(client).reason == 0
    line = connect_line(b, client)
    stamp = time.strftime("%Y-%m-%d")  # local time, as the broker's
    assert re.match(rf"^{stamp}T\d\d:\d\d:\d\d: ", line), line
    # Every line carries it, the start-up lines included.
    first = b.log().splitlines()[0]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: ", first), first


def test_log_timestamp_false_writes_no_stamp(start_broker):
    b = start_broker("log_timestamp false\nlog_type all\n", persistence=False)
    client = uid("nostamp")
    with mqttraw.RawClient(b.host, b.port) as c:
        assert c.connect(client).reason == 0
    line = connect_line(b, client)
    assert not re.match(r"^\d", line), line
    assert not any(re.match(r"^\d", text) for text in b.log().splitlines()), b.log()[-2000:]


def test_default_stamp_unchanged(start_broker):
    """Without the keys each broker keeps its own default: Sluice ISO 8601 UTC, Mosquitto epoch seconds."""
    b = start_broker("log_type all\n", persistence=False)
    client = uid("default")
    with mqttraw.RawClient(b.host, b.port) as c:
        assert c.connect(client).reason == 0
    line = connect_line(b, client)
    if IS_SLUICE:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info: ", line), line
    else:
        assert STAMPED_EPOCH.match(line), line


# --------------------------------------------------------------------------- use_username_as_clientid

def user_client(b, client_id: str, username: str, **kw) -> PahoClient:
    c = PahoClient(b, client_id, **kw)
    c.c.username_pw_set(username)
    return c


def test_use_username_as_clientid_replaces_the_id_and_takes_over_by_user(start_broker):
    b = start_broker("use_username_as_clientid true\nlog_type all\n", persistence=False)
    user = uid("alice")
    first = user_client(b, "device-1", user).connect()
    try:
        # The log names the username as the client id.
        assert wait_until(lambda: f" {user}" in b.log(), 5), b.log()[-2000:]
        # Another id with the same username is the same client: it takes the first one over.
        second = user_client(b, "device-2", user).connect()
        try:
            assert first.wait_disconnected(5), "the first connection of the user was not taken over"
            # A different user with the first's id is a different client: no takeover.
            other = user_client(b, "device-2", uid("bob")).connect()
            time.sleep(0.5)
            assert second.c.is_connected() and other.c.is_connected()
            other.close()
        finally:
            second.close()
    finally:
        first.close()


def test_use_username_as_clientid_keeps_the_users_session(start_broker):
    b = start_broker("use_username_as_clientid true\n", persistence=False)
    user = uid("carol")
    sub = user_client(b, "first-id", user, clean=False).connect()
    sub.subscribe("uac/#", qos=1)
    sub.disconnect()
    pub = user_client(b, "pub", uid("pub")).connect()
    pub.publish("uac/t", b"while-away", qos=1)
    pub.close()
    again = user_client(b, "another-id", user, clean=False)
    again.connect()
    try:
        assert again.session_present
        assert wait_until(lambda: again.collector.payloads() == [b"while-away"], 5), again.collector.payloads()
    finally:
        again.close()


def test_use_username_as_clientid_assigns_the_username_to_an_empty_id(start_broker):
    b = start_broker("use_username_as_clientid true\n", persistence=False)
    # MQTT 5 CONNECT: clean start and a username, an empty client id.
    variable = mqttraw.mqtt_str(b"MQTT") + bytes([5, 0x82]) + struct.pack("!H", 60) + b"\x00"
    with mqttraw.RawClient(b.host, b.port, version=5) as c:
        c.send(mqttraw.packet(mqttraw.CONNECT, 0, variable + mqttraw.mqtt_str(b"") + mqttraw.mqtt_str(b"alice")))
        ack = c.expect(mqttraw.CONNACK)
        assert ack.reason == 0
        assert ack.properties.get(0x12) == "alice"  # Assigned Client Identifier


def test_use_username_as_clientid_refuses_a_client_without_username(start_broker):
    b = start_broker("use_username_as_clientid true\n", persistence=False)
    with mqttraw.RawClient(b.host, b.port) as c:
        assert c.connect(uid("anon")).reason == 5  # not authorised
        assert c.is_closed()
    with mqttraw.RawClient(b.host, b.port, version=5) as c:
        assert c.connect(uid("anon5")).reason == 0x87
        assert c.is_closed()


# --------------------------------------------------------------------------- use_subject_as_username

def client_certificate(tmp_path, subject: list[tuple]) -> tuple[str, str]:
    """A client certificate signed by the fixtures' CA, with `subject` as (OID, value) pairs in DER order."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    ca_key = serialization.load_pem_private_key((TLS / "ca.key.pem").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((TLS / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(oid, value) for oid, value in subject]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "subject.pem", tmp_path / "subject.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def tls_round_trip(port: int, cert: str, key: str, topic: str) -> bytes:
    """Subscribe and publish with the same client certificate; what the subscriber got."""
    tls = ["-h", "localhost", "-p", str(port), "--cafile", str(TLS / "ca.pem"), "--cert", cert, "--key", key]
    sub = subprocess.Popen(["mosquitto_sub", *tls, "-t", topic, "-C", "1", "-W", "4", "-q", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.8)
    subprocess.run(["mosquitto_pub", *tls, "-t", topic, "-m", "by-subject", "-q", "1"], capture_output=True, timeout=10)
    out, _ = sub.communicate(timeout=10)
    return out.strip()


def test_use_subject_as_username_is_the_rfc2253_subject(start_broker, tmp_path):
    from cryptography.x509.oid import NameOID
    cert, key = client_certificate(tmp_path, [(NameOID.COUNTRY_NAME, "GB"), (NameOID.ORGANIZATION_NAME, "Acme, Inc"),
                                              (NameOID.ORGANIZATIONAL_UNIT_NAME, "Line+1"),
                                              (NameOID.COMMON_NAME, "pump é 7")])
    subject = r"CN=pump \C3\A9 7,OU=Line\+1,O=Acme\, Inc,C=GB"
    printed = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert printed == "subject=" + subject, printed
    acl = tmp_path / "acl"
    acl.write_text(f"user {subject}\ntopic readwrite subject/#\n")
    port = free_port()
    b = start_broker(f"acl_file {acl}\nlistener {port} 127.0.0.1\ncertfile {TLS / 'server.pem'}\n"
                     f"keyfile {TLS / 'server.key.pem'}\ncafile {TLS / 'ca.pem'}\nrequire_certificate true\n"
                     "use_subject_as_username true\n", persistence=False)
    assert tls_round_trip(port, cert, key, "subject/a") == b"by-subject", b.log()[-2000:]
    # Another certificate is another user: the ACL gives it nothing (so the check above can fail).
    assert tls_round_trip(port, str(TLS / "client.pem"), str(TLS / "client.key.pem"), "subject/a") == b""


# --------------------------------------------------------------------------- upgrade_outgoing_qos

def delivered_qos(b, published_qos: int, subscribed_qos: int) -> int:
    topic = f"uoq/{uid()}"
    with mqttraw.RawClient(b.host, b.port) as sub, mqttraw.RawClient(b.host, b.port) as pub:
        assert sub.connect(uid("uoqs")).reason == 0
        sub.send(mqttraw.subscribe([(topic, subscribed_qos)]))
        sub.expect(mqttraw.SUBACK)
        assert pub.connect(uid("uoqp")).reason == 0
        pub.send(mqttraw.publish(topic, b"m", qos=published_qos))
        if published_qos == 2:  # Mosquitto forwards a QoS 2 message once its PUBREL arrives
            pub.expect(mqttraw.PUBREC)
            pub.send(mqttraw.ack(mqttraw.PUBREL, 1))
        got = sub.expect(mqttraw.PUBLISH)
        assert got.payload == b"m"
        return got.qos


def test_upgrade_outgoing_qos_delivers_at_the_subscriptions_qos(start_broker):
    b = start_broker("upgrade_outgoing_qos true\n", persistence=False)
    assert delivered_qos(b, 0, 2) == 2
    assert delivered_qos(b, 1, 2) == 2
    assert delivered_qos(b, 0, 1) == 1
    assert delivered_qos(b, 2, 1) == 1  # never above the subscription


def test_without_upgrade_outgoing_qos_the_lower_qos_wins(start_broker):
    b = start_broker(persistence=False)
    assert delivered_qos(b, 0, 2) == 0
    assert delivered_qos(b, 2, 1) == 1


# --------------------------------------------------------------------------- max_inflight_bytes

def connect_qos1_pair(sub, pub, topic: str) -> None:
    """Connects `sub`, subscribed to `topic` at QoS 1, then `pub`."""
    assert sub.connect(uid("mibs")).reason == 0
    sub.send(mqttraw.subscribe([(topic, 1)]))
    sub.expect(mqttraw.SUBACK)
    assert pub.connect(uid("mibp")).reason == 0


def test_max_inflight_bytes_holds_messages_until_acknowledged(start_broker):
    b = start_broker("max_inflight_bytes 100\n", persistence=False)
    topic = f"mib/{uid()}"
    with mqttraw.RawClient(b.host, b.port) as sub, mqttraw.RawClient(b.host, b.port) as pub:
        connect_qos1_pair(sub, pub, topic)
        for i in range(1, 4):
            pub.send(mqttraw.publish(topic, b"%d" % i * 60, qos=1, packet_id=i))
            pub.expect(mqttraw.PUBACK)
        first, second = sub.expect(mqttraw.PUBLISH), sub.expect(mqttraw.PUBLISH)
        assert (first.payload, second.payload) == (b"1" * 60, b"2" * 60)
        # 120 bytes in flight (>= 100): the third waits for an acknowledgement.
        with pytest.raises(TimeoutError):
            sub.read_packet(timeout=1.0)
        sub.send(mqttraw.ack(mqttraw.PUBACK, first.packet_id))
        third = sub.expect(mqttraw.PUBLISH)
        assert third.payload == b"3" * 60


def test_max_inflight_bytes_lets_a_larger_message_go_alone(start_broker):
    b = start_broker("max_inflight_bytes 100\n", persistence=False)
    topic = f"mib/{uid()}"
    with mqttraw.RawClient(b.host, b.port) as sub, mqttraw.RawClient(b.host, b.port) as pub:
        connect_qos1_pair(sub, pub, topic)
        pub.send(mqttraw.publish(topic, b"B" * 500, qos=1, packet_id=1))
        pub.send(mqttraw.publish(topic, b"s", qos=1, packet_id=2))
        big = sub.expect(mqttraw.PUBLISH)
        assert big.payload == b"B" * 500
        with pytest.raises(TimeoutError):
            sub.read_packet(timeout=1.0)
        sub.send(mqttraw.ack(mqttraw.PUBACK, big.packet_id))
        assert sub.expect(mqttraw.PUBLISH).payload == b"s"


# --------------------------------------------------------------------------- check_retain_source

def retained_seen_by(b, username: str, topic: str) -> list[bytes]:
    reader = user_client(b, uid("reader"), username).connect()
    try:
        reader.subscribe(topic, qos=1)
        reader.collector.settle(0.8)
        return reader.collector.payloads()
    finally:
        reader.close()


def retained_after_revoking_the_publisher(start_broker, tmp_path, extra: str) -> tuple[list[bytes], list[bytes]]:
    """alice retains a message, bob reads it; the ACL is reloaded without alice's write right."""
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite crs/#\nuser bob\ntopic read crs/#\n")
    b = start_broker(f"acl_file {acl}\n{extra}", persistence=False)
    alice = user_client(b, uid("alice"), "alice").connect()
    alice.publish("crs/t", b"from-alice", qos=1, retain=True)
    alice.close()
    before = retained_seen_by(b, "bob", "crs/#")
    acl.write_text("user alice\ntopic read crs/#\nuser bob\ntopic read crs/#\n")
    b.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)  # both brokers reload at once; no line to wait for that both write
    return before, retained_seen_by(b, "bob", "crs/#")


def test_check_retain_source_holds_back_a_message_whose_publisher_lost_write_access(start_broker, tmp_path):
    before, after = retained_after_revoking_the_publisher(start_broker, tmp_path, "check_retain_source true\n")
    assert before == [b"from-alice"]
    assert after == []


def test_check_retain_source_false_and_the_default_deliver_it_anyway(start_broker, tmp_path):
    """Debian's mosquitto 2.0.11 does not check without the key, whatever its man page says: neither does Sluice."""
    (tmp_path / "off").mkdir()
    before, after = retained_after_revoking_the_publisher(start_broker, tmp_path / "off", "check_retain_source false\n")
    assert before == after == [b"from-alice"]
    (tmp_path / "default").mkdir()
    before, after = retained_after_revoking_the_publisher(start_broker, tmp_path / "default", "")
    assert before == after == [b"from-alice"]


def test_check_retain_source_after_a_restart_uses_the_saved_publisher(start_broker, tmp_path):
    """The publisher is saved with the retained message: after a restart with alice's write right gone
    (the ACL changed while the broker was down), the message is held back; bob's own is not."""
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite crs/#\nuser bob\ntopic readwrite crs/#\n")
    b = start_broker(f"acl_file {acl}\ncheck_retain_source true\n")  # persistence on
    for user, topic in (("alice", "crs/a"), ("bob", "crs/b")):
        c = user_client(b, uid(user), user).connect()
        c.publish(topic, f"from-{user}".encode(), qos=1, retain=True)
        c.close()
    assert sorted(retained_seen_by(b, "bob", "crs/#")) == [b"from-alice", b"from-bob"]
    acl.write_text("user alice\ntopic read crs/#\nuser bob\ntopic readwrite crs/#\n")
    b.restart()
    assert retained_seen_by(b, "bob", "crs/#") == [b"from-bob"]
