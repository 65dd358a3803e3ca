"""Configuration errors: clear messages naming file, line and key."""

import re
import subprocess

import pytest

from conftest import IS_SLUICE, broker_command, free_port

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
