"""`sluice pub` and `sluice sub`, the everyday test clients, against the broker under test."""

from __future__ import annotations

import subprocess
import time

import pytest

from conftest import require_sluice_binary, uid


def sluice(*args: str, stdin: str | None = None, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run([str(require_sluice_binary()), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def start_sub(b, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([str(require_sluice_binary()), "sub", "-p", str(b.port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # let it connect and subscribe (a CLI process start included)
    return proc


@pytest.mark.parametrize("version,qos", [("311", "1"), ("5", "2"), ("31", "0")])
def test_pub_lines_reach_sub_in_order(broker, version, qos):
    topic = f"cli/{uid()}"
    sub = start_sub(broker, "-t", f"{topic}/#", "-q", qos, "-V", version, "-C", "5", "-v")
    pub = sluice("pub", "-p", str(broker.port), "-t", f"{topic}/x", "-q", qos, "-V", version, "-l",
                 stdin="".join(f"m{i}\n" for i in range(5)))
    assert pub.returncode == 0, pub.stderr
    out, err = sub.communicate(timeout=15)
    assert sub.returncode == 0, err
    assert out.splitlines() == [f"{topic}/x m{i}" for i in range(5)]


def test_retained_message_and_repeat(broker):
    topic = f"cli/{uid()}"
    assert sluice("pub", "-p", str(broker.port), "-t", topic, "-m", "kept", "-r", "-q", "1").returncode == 0
    got = sluice("sub", "-p", str(broker.port), "-t", topic, "-C", "1")
    assert got.stdout.strip() == "kept"
    sub = start_sub(broker, "-t", topic, "-C", "4", "-q", "1")
    assert sluice("pub", "-p", str(broker.port), "-t", topic, "-m", "again", "--repeat", "3", "-q", "1").returncode == 0
    out, _ = sub.communicate(timeout=15)
    assert out.splitlines() == ["kept"] + ["again"] * 3  # the retained message comes first


def test_idle_sub_pings_and_stays_connected(broker):
    # Keep-alive 2 s: without PINGREQs the broker closes the connection after 3 s of silence.
    topic = f"cli/{uid()}"
    sub = start_sub(broker, "-t", topic, "-k", "2", "-C", "1", "-q", "1")
    time.sleep(5)
    assert sub.poll() is None, sub.communicate()[1]
    assert sluice("pub", "-p", str(broker.port), "-t", topic, "-m", "late", "-q", "1").returncode == 0
    out, err = sub.communicate(timeout=15)
    assert sub.returncode == 0, err
    assert out.splitlines() == ["late"]


@pytest.mark.sluice_only(reason="checks the sluice CLI's own argument errors")
def test_bad_arguments_are_reported(broker):
    bad_version = sluice("pub", "-p", str(broker.port), "-t", "t", "-m", "x", "-V", "4")
    assert bad_version.returncode != 0 and "-V must be 31, 311 or 5" in bad_version.stderr
    no_message = sluice("pub", "-p", str(broker.port), "-t", "t")
    assert no_message.returncode != 0 and "exactly one of -m MESSAGE, -l or -n" in no_message.stderr
    refused = sluice("pub", "-p", str(broker.port), "-t", "t/+", "-m", "x", "-q", "1")
    assert refused.returncode != 0  # a wildcard topic name is refused by the broker (connection closed)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The failure is one `sluice: ...` line on stderr and a non-zero exit, nothing else."""
    assert r.returncode != 0, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sluice: "), r.stderr
    assert "NIO" not in r.stderr and "errno" not in r.stderr and "[IPv4]" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.sluice_only(reason="checks the sluice CLI's own error lines")
@pytest.mark.parametrize("qos", ["0", "1"])
def test_pub_to_a_wildcard_topic_fails_in_one_line(broker, qos):
    line = one_line_error(sluice("pub", "-p", str(broker.port), "-t", "a/+/b", "-m", "x", "-q", qos))
    assert "cannot publish to 'a/+/b'" in line, line


@pytest.mark.sluice_only(reason="checks the sluice CLI's own error lines")
@pytest.mark.parametrize("command", ["pub", "sub"])
def test_connection_refused_is_one_line_and_exit_1(command):
    from conftest import free_port
    port = free_port()
    args = ["-m", "x"] if command == "pub" else []
    r = sluice(command, "-p", str(port), "-t", "t", *args)
    assert r.returncode == 1
    assert one_line_error(r) == f"sluice: cannot connect to 127.0.0.1:{port}: connection refused"


@pytest.mark.sluice_only(reason="checks the sluice CLI's own error lines")
def test_bad_password_is_one_line_naming_the_reason(start_broker, tmp_path):
    passwd = tmp_path / "passwd"
    made = subprocess.run([str(require_sluice_binary()), "passwd", "-b", "-c", str(passwd), "alice", "right"],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    b = start_broker(f"allow_anonymous false\npassword_file {passwd}\n")
    for version in ("311", "5"):
        line = one_line_error(sluice("pub", "-p", str(b.port), "-V", version, "-u", "alice", "-P", "wrong",
                                     "-t", "t", "-m", "x"))
        assert line.startswith("sluice: the broker refused the connection: 0x8"), line
        assert "bad user name or password" in line or "not authorized" in line, line
    assert sluice("pub", "-p", str(b.port), "-u", "alice", "-P", "right", "-t", "t", "-m", "x").returncode == 0


@pytest.mark.sluice_only(reason="checks the sluice CLI's own error lines")
def test_queue_commands_name_the_bridges_on_a_typo(tmp_path):
    from conftest import free_port
    conf = tmp_path / "gw.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\npersistence_location {tmp_path}/data/\n"
                    f"connection central\naddress 127.0.0.1:{free_port()}\ntopic a/# out 1\n"
                    f"connection backup\naddress 127.0.0.1:{free_port()}\ntopic b/# out 1\n")
    # A store must exist: `sluice run` creates it; stop it at once.
    proc = subprocess.Popen([str(require_sluice_binary()), "run", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "data" / "sluice.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert sluice("queue", "stats", "-c", str(conf), "central").returncode == 0
    for args in (["stats"], ["peek"], ["purge", "--yes"], ["dead"]):
        line = one_line_error(sluice("queue", *args, "-c", str(conf), "centrl"))
        assert line == "sluice: no bridge 'centrl' in the configuration or the store (bridges: backup, central)", line


@pytest.mark.sluice_only(reason="checks the sluice CLI's own error lines")
def test_passwd_argument_errors_are_one_line(tmp_path):
    line = one_line_error(sluice("passwd", "-b", str(tmp_path / "pw"), "alice"))
    assert line == "sluice: -b needs a password after the username.", line
