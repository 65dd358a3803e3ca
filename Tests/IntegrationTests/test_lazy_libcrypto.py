"""libcrypto (OpenSSL 3) is dlopen'd on first use, not linked (Sources/CLibcrypto): a broker without
`password_file` or `crlfile` never maps it, one with them loads it at start-up and works, and when the
library cannot be loaded those settings are a clean configuration error naming the cause, never a crash.
A bogus libcrypto.so.3 first on LD_LIBRARY_PATH stands in for a missing or damaged libssl3."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import mqttraw
from mqttraw import PUBLISH, SUBACK
from conftest import free_port, require_sluice_binary, uid
from test_crlfile import listener_conf, pki, start_tls, tls_pub  # noqa: F401 (pki is a fixture)

pytestmark = pytest.mark.sluice_only(reason="how Sluice loads libcrypto")

BROKEN = "libcrypto.so.3 could not be loaded"


def maps_libcrypto(pid: int) -> bool:
    return "libcrypto" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture
def break_libcrypto(tmp_path, monkeypatch):
    """Call it to put a libcrypto.so.3 that is not a library first on LD_LIBRARY_PATH of every process started after."""
    def _break() -> None:
        directory = tmp_path / "broken-lib"
        directory.mkdir()
        (directory / "libcrypto.so.3").write_text("not a shared object\n")
        monkeypatch.setenv("LD_LIBRARY_PATH", str(directory))
    return _break


def password_file(tmp_path: Path) -> Path:
    passwd = tmp_path / "passwd"
    made = subprocess.run([str(require_sluice_binary()), "passwd", "-b", "-c", str(passwd), "alice", "right"],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    return passwd


def retained_round_trip(b, topic: str, payload: bytes) -> None:
    with mqttraw.RawClient(b.host, b.port) as c:
        c.connect(uid("lazy"))
        c.send(mqttraw.publish(topic, payload, qos=1, retain=True, packet_id=1))
        c.expect(mqttraw.PUBACK, timeout=10)
        c.send(mqttraw.subscribe([(topic, 0)]))
        c.expect(SUBACK)
        got = c.expect(PUBLISH, timeout=5)
        assert (got.topic, got.payload) == (topic, payload)


def test_broker_without_crypto_settings_never_loads_libcrypto(start_broker):
    b = start_broker()
    assert not maps_libcrypto(b.proc.pid)
    # A topic too long for an LMDB key is stored under its SHA-256 (computed in Swift) and comes back.
    topic = "long/" + "x" * 595
    retained_round_trip(b, topic, b"kept")
    b.restart()
    with mqttraw.RawClient(b.host, b.port) as c:
        c.connect(uid("after"))
        c.send(mqttraw.subscribe([(topic, 0)]))
        c.expect(SUBACK)
        assert c.expect(PUBLISH, timeout=5).payload == b"kept"
    assert not maps_libcrypto(b.proc.pid)


def test_password_file_loads_libcrypto_and_authenticates(start_broker, tmp_path):
    b = start_broker(f"allow_anonymous false\npassword_file {password_file(tmp_path)}\n")
    assert maps_libcrypto(b.proc.pid)
    for password, accepted in (("right", True), ("wrong", False)):
        result = subprocess.run(["mosquitto_pub", "-h", b.host, "-p", str(b.port), "-u", "alice", "-P", password,
                                 "-t", "t", "-m", "x"], capture_output=True, text=True, timeout=15)
        assert (result.returncode == 0) == accepted, (password, result.stderr)


def test_crlfile_loads_libcrypto_and_refuses_the_revoked(start_broker, pki):  # noqa: F811
    port = free_port()
    b = start_tls(start_broker, port, listener_conf(port, pki, pki["crl"]))
    assert maps_libcrypto(b.proc.pid)
    assert tls_pub(port, pki, pki["good"]).returncode == 0
    assert tls_pub(port, pki, pki["revoked"]).returncode != 0


def test_without_crypto_settings_a_broken_libcrypto_does_not_matter(start_broker, break_libcrypto):
    break_libcrypto()
    b = start_broker()
    retained_round_trip(b, "long/" + "z" * 600, b"digest key without libcrypto")
    assert b.alive()


def sluice(*commands: str, conf: Path) -> list[subprocess.CompletedProcess]:
    return [subprocess.run([str(require_sluice_binary()), command, "-c", str(conf)], capture_output=True, text=True,
                           timeout=20) for command in commands]


def assert_clean_failure(result: subprocess.CompletedProcess, path: Path) -> None:
    # A non-zero exit, not a signal (a crash is negative here), naming the file, the cause and the fix.
    assert result.returncode > 0, (result.returncode, result.stderr)
    assert BROKEN in result.stderr and "install libssl3" in result.stderr, result.stderr
    assert str(path) in result.stderr, result.stderr
    assert "invalid ELF header" in result.stderr or "file too short" in result.stderr, result.stderr


def test_password_file_with_a_broken_libcrypto_is_a_configuration_error(tmp_path, break_libcrypto):
    passwd = password_file(tmp_path)  # made before libcrypto is broken
    break_libcrypto()
    conf = tmp_path / "gw.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n")
    for result in sluice("check", "run", conf=conf):
        assert_clean_failure(result, passwd)
    made = subprocess.run([str(require_sluice_binary()), "passwd", "-b", str(passwd), "bob", "pw"],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode > 0 and made.stderr.startswith("sluice: ") and BROKEN in made.stderr, made.stderr


def test_crlfile_with_a_broken_libcrypto_is_a_configuration_error(tmp_path, pki, break_libcrypto):  # noqa: F811
    break_libcrypto()
    conf = tmp_path / "gw.conf"
    conf.write_text(listener_conf(free_port(), pki, pki["crl"]) + "\n")
    for result in sluice("check", "run", conf=conf):
        assert_clean_failure(result, pki["crl"])
