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


@pytest.mark.sluice_only(reason="checks the sluice CLI's own argument errors")
def test_bad_arguments_are_reported(broker):
    bad_version = sluice("pub", "-p", str(broker.port), "-t", "t", "-m", "x", "-V", "4")
    assert bad_version.returncode != 0 and "-V must be 31, 311 or 5" in bad_version.stderr
    no_message = sluice("pub", "-p", str(broker.port), "-t", "t")
    assert no_message.returncode != 0 and "exactly one of -m MESSAGE, -l or -n" in no_message.stderr
    refused = sluice("pub", "-p", str(broker.port), "-t", "t/+", "-m", "x", "-q", "1")
    assert refused.returncode != 0  # a wildcard topic name is refused by the broker (connection closed)
