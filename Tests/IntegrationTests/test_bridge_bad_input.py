"""Bad bridge input: config errors, an unreachable central, wrong remote credentials."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from bridgeharness import (BridgeSpec, bridge_env, free_port, require_sluice_binary,  # noqa: F401
                           uid, wait_until)

GOOD_HEAD = """listener {port} 127.0.0.1
allow_anonymous true
persistence_location {data}/
connection central
address 127.0.0.1:{cport}
"""


@pytest.mark.parametrize("line, key_hint", [
    ('topic sensors/# sideways 1 "" gw1/', "sideways"),
    ('topic sensors/# out 1 "" gw+/', "gw+/"),
    ('topic sensors/# out 1 lo+c/ gw1/', "lo+c/"),
    ('topic sensors/# both 1 "" gw1/+/', "gw1/+/"),
])
def test_check_rejects_bad_topic_line(tmp_path, line, key_hint):
    conf = tmp_path / "gw.conf"
    text = GOOD_HEAD.format(port=free_port(), data=tmp_path / "data", cport=free_port())
    conf.write_text(text + "restart_timeout 1 2\n" + line + "\n")
    lineno = text.count("\n") + 2
    r = subprocess.run([str(require_sluice_binary()), "check", "-c", str(conf)],
                       capture_output=True, text=True, timeout=20)
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"check accepted {line!r}: {out}"
    assert f"gw.conf:{lineno}" in out, f"no file:line (gw.conf:{lineno}) in {out!r}"
    assert re.search(r"\btopic\b", out), f"key 'topic' not named in {out!r}"
    assert key_hint in out or "direction" in out or "prefix" in out, out


def _assert_local_service(gw, env):
    assert gw.alive(), f"gateway died\n{env.logs()}"
    sub = env.client(gw.port, uid("lsub"))
    sub.subscribe("local/#", 1)
    pub = env.client(gw.port, uid("lpub"))
    pub.publish("local/t", b"hello", qos=1)
    assert wait_until(lambda: sub.messages("local/"), 5), f"local pub/sub broken\n{env.logs()}"


def _connect_attempts(gw) -> int:
    return gw.count_log(r"connecting to")


def test_unreachable_central_retries_with_backoff(bridge_env):
    env = bridge_env
    dead = free_port()
    gw = env.gateway([BridgeSpec([dead])]).start()
    t0 = time.monotonic()
    n0 = _connect_attempts(gw)
    time.sleep(5.0)
    n1 = _connect_attempts(gw)
    elapsed = time.monotonic() - t0
    _assert_local_service(gw, env)
    # local sensors/ messages are queued meanwhile (accepted, PUBACKed)
    pub = env.client(gw.port, uid("qpub"))
    pub.publish("sensors/q", b"1", qos=1)
    log = gw.log()
    assert re.search(r"(cannot connect|connection refused|failed)", log, re.I), \
        f"no connect-failure log line\n{gw.log_tail()}"
    attempts = n1 - n0
    assert 2 <= attempts <= 10, (f"{attempts} 'connecting to' lines in {elapsed:.1f}s with "
                                 f"restart_timeout 1 2 (want 2..10)\n{gw.log_tail()}")


def test_wrong_credentials_logged_and_retried(bridge_env):
    env = bridge_env
    central = env.central(users={"gw": "right-pass"}).start()
    spec = BridgeSpec([central.port], extra=["remote_username gw", "remote_password wrong-pass"])
    gw = env.gateway([spec]).start()
    t0 = time.monotonic()
    n0 = _connect_attempts(gw)
    time.sleep(5.0)
    n1 = _connect_attempts(gw)
    elapsed = time.monotonic() - t0
    _assert_local_service(gw, env)
    assert gw.connected_count() == 0, f"bridge claims to be connected\n{env.logs()}"
    log = gw.log()
    refusal = [ln for ln in log.splitlines()
               if re.search(r"not authori[sz]ed|bad user ?name or password|0x86|0x87|"
                            r"return code 5|reason 5\b", ln, re.I)]
    assert refusal, f"no log line with the refusal reason\n{gw.log_tail()}"
    attempts = n1 - n0
    assert 2 <= attempts <= 10, (f"{attempts} 'connecting to' lines in {elapsed:.1f}s with "
                                 f"restart_timeout 1 2 (want 2..10)\n{gw.log_tail()}")
