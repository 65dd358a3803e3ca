"""Broker-side Mosquitto keys honoured with Mosquitto's meaning (issue 16): log_timestamp(_format),
use_username_as_clientid, use_subject_as_username, upgrade_outgoing_qos, max_inflight_bytes and
check_retain_source. Each test also runs against Debian's mosquitto (SLUICE_TEST_BROKER=mosquitto) to
show the behaviour matches; where the lines differ by design (Sluice's level word), the test says so."""

from __future__ import annotations

import re
import time

import mqttraw
from bridgeharness import wait_until
from conftest import IS_SLUICE, PahoClient, uid

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


def test_use_username_as_clientid_refuses_a_client_without_username(start_broker):
    b = start_broker("use_username_as_clientid true\n", persistence=False)
    with mqttraw.RawClient(b.host, b.port) as c:
        assert c.connect(uid("anon")).reason == 5  # not authorised
        assert c.is_closed()
    with mqttraw.RawClient(b.host, b.port, version=5) as c:
        assert c.connect(uid("anon5")).reason == 0x87
        assert c.is_closed()
