"""Configuration errors: clear messages naming file, line and key."""

import gzip
import re
import subprocess
import time
from pathlib import Path

import pytest

import mqttraw
from conftest import IS_MOSQUITTO, IS_SLUICE, REPO, Broker, broker_command, free_port, uid

BAD_LINE_NO = 5


def write_conf(tmp_path, bad_line: str, name="gateway-under-test.conf"):
    port = free_port()
    lines = ["# Sluice integration test config", "", f"listener {port} 127.0.0.1",
             "allow_anonymous true", bad_line]
    assert lines[BAD_LINE_NO - 1] == bad_line
    if not IS_SLUICE:
        lines.insert(1, "user root")  # keep the bad line's number: replace the blank line
        lines.pop(2)
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def assert_names_file_line_key(out: str, path, key: str):
    assert path.name in out, f"file name not in output:\n{out}"
    assert re.search(rf"(:{BAD_LINE_NO}\b|line {BAD_LINE_NO}\b)", out), \
        f"line {BAD_LINE_NO} not in output:\n{out}"
    assert key in out, f"key {key!r} not in output:\n{out}"


def run_cmd(cmd, timeout=10):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{cmd} still running after {timeout}s (did it start anyway?)") \
            from None
    return r.returncode, r.stdout + r.stderr


@pytest.mark.sluice_only(reason="`sluice check` is a Sluice subcommand")
def test_check_unknown_key(tmp_path):
    conf = write_conf(tmp_path, "frobnicate_level 7")
    rc, out = run_cmd(broker_command(conf)[:1] + ["check", "-c", str(conf)])
    assert rc != 0, out
    assert_names_file_line_key(out, conf, "frobnicate_level")


@pytest.mark.sluice_only(reason="`sluice check` is a Sluice subcommand")
def test_check_valid_config(tmp_path):
    conf = write_conf(tmp_path, "max_queued_messages 100")
    rc, out = run_cmd(broker_command(conf)[:1] + ["check", "-c", str(conf)])
    assert rc == 0, out


@pytest.mark.sluice_only(reason="`sluice check` is a Sluice subcommand")
def test_check_missing_file(tmp_path):
    missing = tmp_path / "does-not-exist.conf"
    rc, out = run_cmd(broker_command(missing)[:1] + ["check", "-c", str(missing)])
    assert rc != 0
    assert missing.name in out, out


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 accepts `max_connections banana` (atoi -> 0); "
                         "the design wants a bad value reported with file, line and key")
def test_check_bad_value(tmp_path):
    conf = write_conf(tmp_path, "max_connections banana")
    rc, out = run_cmd(broker_command(conf)[:1] + ["check", "-c", str(conf)])
    assert rc != 0, out
    assert_names_file_line_key(out, conf, "max_connections")


def test_run_unknown_key(tmp_path):
    conf = write_conf(tmp_path, "frobnicate_level 7")
    rc, out = run_cmd(broker_command(conf))
    assert rc != 0, out
    assert_names_file_line_key(out, conf, "frobnicate_level")


def test_run_empty_value(tmp_path):
    conf = write_conf(tmp_path, "max_queued_messages")
    rc, out = run_cmd(broker_command(conf))
    assert rc != 0, out
    assert_names_file_line_key(out, conf, "max_queued_messages")


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 accepts `max_connections banana` and starts")
def test_run_bad_value(tmp_path):
    conf = write_conf(tmp_path, "max_connections banana")
    rc, out = run_cmd(broker_command(conf))
    assert rc != 0, out
    assert_names_file_line_key(out, conf, "max_connections")


# --------------------------------------------------------------------------- every Mosquitto key

EVERY_KEY_FIXTURE = REPO / "fixtures" / "mosquitto" / "every-key-2.0.conf"
MAN_PAGE = Path("/usr/share/man/man5/mosquitto.conf.5.gz")
KEY_DOC = REPO / "docs" / "mosquitto-keys.md"
WILDCARD_FAMILIES = ("auth_opt_", "plugin_opt_")


def family(key: str) -> str:
    """`auth_opt_db_host` -> `auth_opt_*`, as the man page and the key table name them."""
    for prefix in WILDCARD_FAMILIES:
        if key.startswith(prefix):
            return prefix + "*"
    return key


def fixture_keys() -> list[tuple[int, str]]:
    out = []
    for number, line in enumerate(EVERY_KEY_FIXTURE.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((number, line.split()[0]))
    return out


def man_page_keys() -> set[str]:
    """The keys mosquitto.conf(5) documents: the bold word(s) on the line after each `.PP`."""
    text = gzip.open(MAN_PAGE, "rt").read().replace("\\&", "")
    lines = text.splitlines()
    keys = set()
    for previous, line in zip(lines, lines[1:]):
        if previous == ".PP":
            keys.update(re.findall(r"\\fB([a-z0-9_.*]+)\\fR", line))
    return keys - {"mosquitto", "mosquitto.conf"}  # the page's own name and mosquitto(8)


def key_answers() -> dict[str, str]:
    """`sluice check --list-keys`: key -> honoured / accepted, not honoured / refused."""
    rc, out = run_cmd([str(broker_command(Path("x"))[0]), "check", "--list-keys"])
    assert rc == 0, out
    answers = {}
    for line in out.splitlines():
        m = re.match(r"\| `([^`]+)` \| ([^|]+?) \|", line)
        if m:
            answers[m.group(1)] = m.group(2)
    assert len(answers) > 100, out
    return answers


def test_man_page_keys_are_all_in_the_fixture():
    if not MAN_PAGE.is_file():
        pytest.skip(f"{MAN_PAGE} not installed: the committed fixture {EVERY_KEY_FIXTURE.name} stands in")
    documented = man_page_keys()
    assert len(documented) > 90, sorted(documented)  # the extraction found the options, not a few words
    listed = {family(key) for _, key in fixture_keys()}
    assert documented - listed == set(), f"keys the man page documents and {EVERY_KEY_FIXTURE} lacks"


@pytest.mark.sluice_only(reason="`sluice check` is a Sluice subcommand")
def test_every_mosquitto_key_has_an_answer(tmp_path):
    conf = tmp_path / "every-key.conf"
    empty = tmp_path / "conf.d"
    empty.mkdir()
    conf.write_text(EVERY_KEY_FIXTURE.read_text()
                    .replace("@FIXTURES@", str(REPO / "fixtures")).replace("@EMPTY_DIR@", str(empty)))
    answers = key_answers()
    rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
    assert "unknown" not in out, out
    assert "check the spelling" not in out, out
    refused = 0
    for number, key in fixture_keys():
        answer = answers.get(family(key))
        assert answer is not None, f"{key} missing from `sluice check --list-keys`"
        said = [line for line in out.splitlines() if f"{conf.name}:{number}: key '{key}'" in line]
        if answer == "refused":
            refused += 1
            assert len(said) == 1, f"{key}: expected one refusal, got {said}\n{out}"
            assert re.search(rf"Mosquitto key '{re.escape(key)}' is not supported by Sluice: .+ \(.+\)$",
                             said[0]), said[0]
        elif answer == "accepted, not honoured":
            assert len(said) == 1 and said[0].startswith("warning: "), f"{key}: {said}\n{out}"
            assert "accepted but not honoured: " in said[0], said[0]
        else:
            assert said == [], f"{key} is honoured, yet check said {said}"
    assert refused > 0 and rc != 0, out  # refused keys fail the check, every one reported


@pytest.mark.sluice_only(reason="`sluice check` is a Sluice subcommand")
def test_key_doc_is_generated_from_the_table():
    rc, out = run_cmd([str(broker_command(Path("x"))[0]), "check", "--list-keys"])
    assert rc == 0, out
    assert KEY_DOC.read_text() == out, \
        "docs/mosquitto-keys.md is stale: regenerate with `.build/debug/sluice check --list-keys > docs/mosquitto-keys.md`"


@pytest.mark.sluice_only(reason="Mosquitto honours these keys; Sluice accepts them and says what it does instead")
def test_ignored_key_warns_in_check_and_notices_at_start(tmp_path):
    conf = write_conf(tmp_path, "allow_duplicate_messages true")
    rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
    assert rc == 0, out
    assert re.search(rf"^warning: .*{conf.name}:{BAD_LINE_NO}: key 'allow_duplicate_messages': accepted but not "
                     r"honoured: deprecated no-op in Mosquitto 2", out, re.M), out
    proc = subprocess.Popen(broker_command(conf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        lines = [line]
        for _ in range(50):  # bounded: the notice comes before the listeners open
            if "allow_duplicate_messages" in line or not line:
                break
            line = proc.stdout.readline()
            lines.append(line)
        assert "key 'allow_duplicate_messages': accepted but not honoured" in line, "".join(lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.sluice_only(reason="Mosquitto has no refusals; this is Sluice's wording for a key it refuses")
def test_refused_key_says_why_and_what_to_do(tmp_path):
    conf = write_conf(tmp_path, "auth_plugin /usr/lib/mosquitto-go-auth.so")
    for cmd in ([str(broker_command(conf)[0]), "check", "-c", str(conf)], broker_command(conf)):
        rc, out = run_cmd(cmd)
        assert rc != 0, out
        assert_names_file_line_key(out, conf, "auth_plugin")
        assert "Mosquitto key 'auth_plugin' is not supported by Sluice: Sluice cannot load Mosquitto's C plugins" \
            in out, out


# --------------------------------------------------------------------------- default listener

class AnyAddressBroker(Broker):
    """Started once its port LISTENs on any address, IPv4 or IPv6 (conftest's check wants 127.0.0.1)."""

    def _listening(self) -> bool:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[1].endswith(f":{self.port:04X}") and parts[3] == "0A":
                        return True
        return False


def start_with_conf(tmp_path, text: str, broker_class=Broker) -> Broker:
    """A Broker (conftest's helper) whose whole config is `text` ({port} filled in)."""
    b = broker_class(tmp_path, persistence=False)
    b.conf_text = text.format(port=b.port) + ("user root\n" if IS_MOSQUITTO else "")
    b.conf_path.write_text(b.conf_text)
    return b.start()


def connect_publish_receive(host: str, port: int, expect_reason: int = 0) -> None:
    with mqttraw.RawClient(host, port) as c:
        ack = c.connect(uid("dl"))
        assert ack.reason == expect_reason, ack
        if expect_reason:
            return
        topic = f"dl/{uid()}"
        c.send(mqttraw.subscribe([(topic, 0)]))
        c.expect(mqttraw.SUBACK)
        c.send(mqttraw.publish(topic, b"x"))
        assert c.expect(mqttraw.PUBLISH).payload == b"x"


def test_port_and_bind_address_make_the_default_listener(tmp_path):
    b = start_with_conf(tmp_path, "port {port}\nbind_address 127.0.0.1\nallow_anonymous true\n")
    try:
        connect_publish_receive("127.0.0.1", b.port)
    finally:
        b.stop()


def test_port_alone_refuses_anonymous_clients_as_mosquitto_2(tmp_path):
    # `port` binds every interface, so anonymous access is off unless the file turns it on.
    # Only loopback clients are used.
    b = start_with_conf(tmp_path, "port {port}\n", AnyAddressBroker)
    try:
        connect_publish_receive("127.0.0.1", b.port, expect_reason=5)
    finally:
        b.stop()


@pytest.mark.sluice_only(reason="Mosquitto applies it silently; Sluice warns")
def test_allow_anonymous_in_a_listener_section_warns_that_it_applies_to_every_listener(tmp_path):
    conf = tmp_path / "two.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\nlistener {free_port()} ::1\nallow_anonymous false\n")
    rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
    assert rc == 0, out
    assert re.search(r"^warning: .*two.conf:3: key 'allow_anonymous': written in the section of listener "
                     r"\[::1\]:\d+ but applies to every listener, also 127\.0\.0\.1:\d+", out, re.M), out


# --------------------------------------------------------------------------- dual stack

def ipv6_loopback_available() -> bool:
    import socket
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("conf", ["listener {port}\nallow_anonymous true\n",
                                  "port {port}\nallow_anonymous true\n"])
def test_listener_without_address_serves_ipv4_and_ipv6(tmp_path, conf):
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    b = start_with_conf(tmp_path, conf, AnyAddressBroker)
    try:
        connect_publish_receive("127.0.0.1", b.port)
        connect_publish_receive("::1", b.port)
        # Across the families: a subscriber on ::1 gets a message published over 127.0.0.1.
        with mqttraw.RawClient("::1", b.port) as sub, mqttraw.RawClient("127.0.0.1", b.port) as pub:
            assert sub.connect(uid("v6")).reason == 0 and pub.connect(uid("v4")).reason == 0
            topic = f"dual/{uid()}"
            sub.send(mqttraw.subscribe([(topic, 1)]))
            sub.expect(mqttraw.SUBACK)
            pub.send(mqttraw.publish(topic, b"across", qos=1, packet_id=1))
            pub.expect(mqttraw.PUBACK)
            assert sub.expect(mqttraw.PUBLISH).payload == b"across"
    finally:
        b.stop()


def test_listener_with_an_ipv4_address_stays_ipv4(tmp_path):
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    b = start_with_conf(tmp_path, "listener {port} 127.0.0.1\nallow_anonymous true\n")
    try:
        connect_publish_receive("127.0.0.1", b.port)
        with pytest.raises(OSError):
            mqttraw.RawClient("::1", b.port, timeout=1).close()
    finally:
        b.stop()


@pytest.mark.parametrize("domain", ["ipv4", "ipv6"])
def test_socket_domain_binds_one_family(tmp_path, domain):
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    b = start_with_conf(tmp_path, "listener {port}\nsocket_domain " + domain + "\nallow_anonymous true\n",
                        AnyAddressBroker)
    served, refused = ("127.0.0.1", "::1") if domain == "ipv4" else ("::1", "127.0.0.1")
    try:
        connect_publish_receive(served, b.port)
        with pytest.raises(OSError):
            mqttraw.RawClient(refused, b.port, timeout=1).close()
    finally:
        b.stop()


# --------------------------------------------------------------------------- cheap honoured keys

@pytest.mark.sluice_only(reason="Mosquitto 2.0 writes pid_file only when started with -d (daemon)")
def test_pid_file_is_written_at_start_and_removed_at_exit(tmp_path):
    pid_path = tmp_path / "run" / "sluice.pid"
    pid_path.parent.mkdir()
    b = Broker(tmp_path, f"pid_file {pid_path}\n", persistence=False).start()
    try:
        assert pid_path.read_text().strip() == str(b.proc.pid)
    finally:
        b.stop()
    assert not pid_path.exists(), "pid_file left behind after SIGTERM"


@pytest.mark.sluice_only(reason="Mosquitto 2.0 runs on only when not daemonized; Sluice always runs on")
def test_unwritable_pid_file_is_logged_and_the_gateway_runs(tmp_path):
    b = Broker(tmp_path, f"pid_file {tmp_path}/missing-dir/x.pid\n", persistence=False).start()
    try:
        connect_publish_receive(b.host, b.port)
        assert "pid_file: cannot write" in b.log(), b.log()
    finally:
        b.stop()


@pytest.mark.parametrize("enabled", [True, False])
def test_connection_messages(tmp_path, enabled):
    b = Broker(tmp_path, f"connection_messages {str(enabled).lower()}\n", persistence=False).start()
    try:
        client = uid("cm")
        with mqttraw.RawClient(b.host, b.port) as c:
            remote = "%s:%d" % c.sock.getsockname()[:2]
            assert c.connect(client).reason == 0
            c.send(mqttraw.disconnect())
        # Bounded wait for the disconnect line (or for nothing to appear).
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and b.log().count(client) < 2:
            time.sleep(0.05)
        lines = [line for line in b.log().splitlines() if client in line]
        if enabled:
            assert len(lines) >= 1, b.log()  # connected (Mosquitto also logs the disconnect)
            if IS_SLUICE:
                # Both lines name the peer, the second after its socket closed (the address is kept).
                assert any(f"connected from {remote} " in line for line in lines), lines
                assert any(f"disconnected from {remote} " in line for line in lines), lines
        else:
            assert lines == [], lines
    finally:
        b.stop()


# MQTT 5: Sluice says 0x85 Client Identifier not valid; Mosquitto 2.0.11 says 0x80 Unspecified error.
@pytest.mark.parametrize("version, refused", [(4, 2), (5, 0x85 if IS_SLUICE else 0x80)])
def test_allow_zero_length_clientid_false_refuses_an_empty_id(tmp_path, version, refused):
    b = Broker(tmp_path, "allow_zero_length_clientid false\n", persistence=False).start()
    try:
        with mqttraw.RawClient(b.host, b.port, version=version) as c:
            assert c.connect("").reason == refused
        with mqttraw.RawClient(b.host, b.port, version=version) as c:
            assert c.connect(uid("named")).reason == 0
    finally:
        b.stop()


def test_auto_id_prefix_names_assigned_ids(tmp_path):
    b = Broker(tmp_path, "auto_id_prefix gw7-\n", persistence=False).start()
    try:
        with mqttraw.RawClient(b.host, b.port, version=5) as c:
            ack = c.connect("")
            assert ack.reason == 0
            assigned = ack.properties.get(0x12)  # Assigned Client Identifier
            assert assigned and assigned.startswith("gw7-"), ack
    finally:
        b.stop()


def test_max_topic_alias_is_announced(tmp_path):
    b = Broker(tmp_path, "max_topic_alias 3\n", persistence=False).start()
    try:
        with mqttraw.RawClient(b.host, b.port, version=5) as c:
            ack = c.connect(uid("alias"))
            assert ack.reason == 0 and ack.properties.get(0x22) == 3, ack  # Topic Alias Maximum
    finally:
        b.stop()


@pytest.mark.parametrize("enabled", [True, False])
def test_queue_qos0_messages_for_offline_sessions(tmp_path, enabled):
    b = Broker(tmp_path, f"queue_qos0_messages {str(enabled).lower()}\n", persistence=False).start()
    try:
        client, topic = uid("q0"), f"q0/{uid()}"
        with mqttraw.RawClient(b.host, b.port) as c:
            assert c.connect(client, clean=False).reason == 0
            c.send(mqttraw.subscribe([(topic, 1)]))
            c.expect(mqttraw.SUBACK)
            c.send(mqttraw.disconnect())
        # The broker must have seen the session go offline before the publish, or the QoS 0
        # message goes to the closing socket instead of the queue.
        time.sleep(0.5)
        with mqttraw.RawClient(b.host, b.port) as pub:
            assert pub.connect(uid("pub")).reason == 0
            pub.send(mqttraw.publish(topic, b"offline", qos=0))
            pub.send(mqttraw.publish(topic, b"marker", qos=1, packet_id=7))
            pub.expect(mqttraw.PUBACK)
        with mqttraw.RawClient(b.host, b.port) as c:
            assert c.connect(client, clean=False).reason == 0
            got = []
            for _ in range(3):  # bounded: at most the two messages
                p = c.expect(mqttraw.PUBLISH)
                got.append(p.payload)
                if p.payload == b"marker":
                    break
        assert got == ([b"offline", b"marker"] if enabled else [b"marker"]), got
    finally:
        b.stop()


@pytest.mark.sluice_only(reason="Sluice's notice for a key it accepts without honouring it")
def test_set_tcp_nodelay_false_is_noticed_true_is_silent(tmp_path):
    for value, warned in (("false", True), ("true", False)):
        conf = write_conf(tmp_path, f"set_tcp_nodelay {value}")
        rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
        assert rc == 0, out
        assert ("key 'set_tcp_nodelay': accepted but not honoured: Sluice always sets TCP_NODELAY" in out) == warned, out


def test_max_qos(tmp_path):
    b = Broker(tmp_path, "max_qos 1\n", persistence=False).start()
    try:
        with mqttraw.RawClient(b.host, b.port, version=5) as c:
            ack = c.connect(uid("mq"))
            assert ack.reason == 0 and ack.properties.get(0x24) == 1, ack  # Maximum QoS
            c.send(mqttraw.subscribe([("mq/#", 2)], version=5))
            sub_ack = c.expect(mqttraw.SUBACK)
            assert sub_ack.payload == b"\x01", sub_ack  # granted at max_qos
            c.send(mqttraw.publish("mq/x", b"two", qos=2, packet_id=3, version=5))
            got = c.read_until_close()
            assert [p.ptype for p in got] == [mqttraw.DISCONNECT] and got[0].reason == 0x9B, got
        with mqttraw.RawClient(b.host, b.port, version=4) as c:
            assert c.connect(uid("mq3")).reason == 0
            c.send(mqttraw.publish("mq/x", b"two", qos=2, packet_id=3))
            assert c.read_until_close() == []  # 3.1.1 cannot be told: closed
    finally:
        b.stop()


# --------------------------------------------------------------------------- per_listener_settings

def test_per_listener_settings_anonymous_loopback_beside_an_authenticated_listener(tmp_path):
    from conftest import port_listening
    from test_security import connect_with_credentials
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "alice", "alicepass"], check=True)
    secured = free_port()
    b = start_with_conf(tmp_path, "per_listener_settings true\n"
                        "listener {port} 127.0.0.1\nallow_anonymous true\n"
                        f"listener {secured} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n")
    try:
        for _ in range(100):  # bounded: the second listener opens just after the first
            if port_listening(secured):
                break
            time.sleep(0.05)
        with connect_with_credentials(b.port, None, None) as c:
            assert c.connack.reason == 0, "anonymous refused on the open listener"
        with connect_with_credentials(secured, None, None) as c:
            assert c.connack.reason == 5, "anonymous accepted on the authenticated listener"
        with connect_with_credentials(secured, "alice", "alicepass") as c:
            assert c.connack.reason == 0
        with connect_with_credentials(secured, "alice", "wrong") as c:
            assert c.connack.reason in (4, 5), c.connack  # Mosquitto 2.0.11 says 5, Sluice 4
    finally:
        b.stop()


@pytest.mark.sluice_only(reason="Mosquitto supports an acl_file per listener; Sluice refuses it with the reason")
def test_per_listener_acl_file_is_refused_with_the_reason(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\n")
    conf = tmp_path / "pl.conf"
    conf.write_text(f"per_listener_settings true\nlistener {free_port()} 127.0.0.1\nacl_file {acl}\n")
    rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
    assert rc != 0, out
    assert "pl.conf:3: key 'acl_file': Mosquitto key 'acl_file' is not supported by Sluice: an ACL file per listener" in out, out


@pytest.mark.sluice_only(reason="`sluice check` is a Sluice subcommand")
@pytest.mark.parametrize("where", ["global", "per_listener", "acl"])
def test_check_reads_every_password_and_acl_file_as_run_does(tmp_path, where):
    """A password or ACL file `run` refuses fails `check` too, with `run`'s error (file and line): the global
    password file, a listener's own (per_listener_settings true), the ACL file; no bridge's local_password about."""
    good = tmp_path / "good-passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(good), "alice", "alicepass"], check=True)
    bad = tmp_path / "bad-file"
    if where == "acl":
        bad.write_text("topic read a/#\nfrobnicate x\n")
        error = f"{bad}:2: unknown keyword 'frobnicate'"
        text = f"listener {free_port()} 127.0.0.1\nallow_anonymous true\nacl_file {bad}\n"
    else:
        bad.write_text(good.read_text() + "bob-without-a-hash\n")
        error = f"{bad}:2: expected USERNAME:PASSWORD_HASH"
        text = f"listener {free_port()} 127.0.0.1\nallow_anonymous false\npassword_file {bad}\n"
    if where == "per_listener":
        text = (f"per_listener_settings true\nlistener {free_port()} 127.0.0.1\npassword_file {good}\n"
                f"listener {free_port()} 127.0.0.1\npassword_file {bad}\n")
    conf = tmp_path / "pw.conf"
    conf.write_text(text)
    rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
    assert rc != 0, out
    assert error in out, out
    run_rc, run_out = run_cmd(broker_command(conf))
    assert run_rc != 0 and error in run_out, run_out


# --------------------------------------------------------------------------- log_dest

def test_log_dest_file_receives_the_log(tmp_path):
    log_file = tmp_path / "gateway.log"
    b = Broker(tmp_path, f"log_dest file {log_file}\n", persistence=False).start()
    try:
        client = uid("ld")
        with mqttraw.RawClient(b.host, b.port) as c:
            assert c.connect(client).reason == 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and client not in log_file.read_text():
            time.sleep(0.05)
        assert client in log_file.read_text(), log_file.read_text()
        assert client not in b.log(), "log_dest file alone must not also log to stderr"
    finally:
        b.stop()


@pytest.mark.sluice_only(reason="Sluice's notice for a destination it does not honour")
def test_log_dest_syslog_is_noticed_and_stderr_stays(tmp_path):
    conf = write_conf(tmp_path, "log_dest syslog")
    rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
    assert rc == 0, out
    assert "key 'log_dest': accepted but not honoured: Sluice does not log to syslog" in out, out
    b = Broker(tmp_path, "log_dest syslog\n", persistence=False).start()
    try:
        assert "listening" in b.log(), b.log()
    finally:
        b.stop()


@pytest.mark.sluice_only(reason="Sluice's own wording")
def test_log_dest_bad_value(tmp_path):
    conf = write_conf(tmp_path, "log_dest paper")
    rc, out = run_cmd([str(broker_command(conf)[0]), "check", "-c", str(conf)])
    assert rc != 0
    assert_names_file_line_key(out, conf, "log_dest")
