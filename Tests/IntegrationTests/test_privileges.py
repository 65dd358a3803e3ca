"""`user`: a broker started as root drops to that user after binding its listeners and opening
its store and log files (issue 16 item 2). Runs as root with a throwaway user made by the test."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

import mqttraw
from bridgeharness import wait_until
from conftest import IS_SLUICE, Broker, free_port, uid
from mqttraw import PUBACK, SUBACK, read_publishes


@pytest.fixture
def throwaway_user():
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs the test to run as root")
    name = f"sluicet{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def free_privileged_port() -> int:
    """A free port below 1024: binding it needs root, so a listener there shows the bind came first."""
    for port in range(1000, 800, -1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024 on 127.0.0.1")


def broker_with_user(workdir: Path, extra: str) -> Broker:
    """A Broker whose config names its own `user` (conftest adds `user root` for Mosquitto, which
    refuses a second `user` line)."""
    b = Broker(workdir, extra)
    b.conf_text = b.conf_text.replace("user root\n", "", 1)
    b.conf_path.write_text(b.conf_text)
    return b


def thread_ids(pid: int) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """Each thread's (Uid, Gid, Groups) from /proc/PID/task/*/status."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended
        fields = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in text.splitlines() if ":" in line}
        out[task.name] = ([int(x) for x in fields["Uid"]], [int(x) for x in fields["Gid"]],
                          [int(x) for x in fields.get("Groups", [])])
    return out


def test_user_drops_every_thread_after_binding_and_keeps_open_files(tmp_path, throwaway_user):
    account = throwaway_user
    # A listener below 1024 shows the bind came before the drop. Mosquitto 2.0.11 drops first and
    # cannot bind it ("try using setcap"), so against it both listeners are unprivileged.
    low_port = free_privileged_port() if IS_SLUICE else free_port()
    log_file = tmp_path / "broker-file.log"
    # Sluice opens its log file before the drop (it stays writable); Mosquitto opens it after.
    log_lines = f"log_dest file {log_file}\nlog_dest stderr\n" if IS_SLUICE else ""
    b = broker_with_user(tmp_path, f"listener {low_port} 127.0.0.1\n{log_lines}user {account.pw_name}\n")
    b.start()
    try:
        # The port accepts as soon as it is bound; Sluice drops once every stage is up and then logs
        # its ready banner (Mosquitto drops before it binds).
        if IS_SLUICE:
            assert wait_until(lambda: " ready: " in b.log(), 10), b.log()
        threads = thread_ids(b.proc.pid)
        assert threads
        for tid, (uids, gids, groups) in threads.items():
            assert uids == [account.pw_uid] * 4, f"thread {tid} uids {uids}"
            assert gids == [account.pw_gid] * 4, f"thread {tid} gids {gids}"
            assert 0 not in groups, f"thread {tid} kept root's group: {groups}"
        if IS_SLUICE:
            assert len(threads) > 2, "expected the event loops and the store writer as threads"
        # Both listeners serve; a retained QoS 1 message is acknowledged, which for Sluice waits for the
        # store commit: the store opened as root is still written through its open descriptors.
        topic = f"priv/{uid()}"
        for port in (b.port, low_port):
            with mqttraw.RawClient(b.host, port) as c:
                assert c.connect(uid("after-drop")).reason == 0
                c.send(mqttraw.publish(topic, f"via {port}".encode(), qos=1, retain=True))
                c.expect(PUBACK)
        with mqttraw.RawClient(b.host, b.port) as c:
            c.connect(uid("reader"))
            c.send(mqttraw.subscribe([(topic, 1)]))
            c.expect(SUBACK)
            got = read_publishes(c, 2.0, expect=1, ack=True)
            assert [p.payload for p in got] == [f"via {low_port}".encode()]
        if IS_SLUICE:
            # The log file opened as root before the drop still receives lines written after it.
            assert "dropped privileges to user" in log_file.read_text()
            assert "after-drop" in log_file.read_text()
    finally:
        b.stop()
    if IS_SLUICE:
        # The store written as the new user after the drop opens again (as root) with the message kept.
        b2 = broker_with_user(tmp_path, f"user {account.pw_name}\n").start()
        try:
            with mqttraw.RawClient(b2.host, b2.port) as c:
                c.connect(uid("reader2"))
                c.send(mqttraw.subscribe([(topic, 1)]))
                c.expect(SUBACK)
                assert [p.payload for p in read_publishes(c, 2.0, expect=1, ack=True)] == [f"via {low_port}".encode()]
        finally:
            b2.stop()


def test_user_that_does_not_exist_refuses_to_start(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the user only matters when started as root")
    missing = f"nosuch{uuid.uuid4().hex[:8]}"
    b = broker_with_user(tmp_path, f"user {missing}\n")
    with pytest.raises(RuntimeError) as failed:
        b.start()
    b.stop()
    assert missing in str(failed.value)
    if IS_SLUICE:
        assert "no such user" in str(failed.value)


def test_user_root_keeps_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    b = broker_with_user(tmp_path, "user root\n").start()
    try:
        assert all(uids == [0] * 4 for uids, _, _ in thread_ids(b.proc.pid).values())
        with mqttraw.RawClient(b.host, b.port) as c:
            assert c.connect(uid("root")).reason == 0
    finally:
        b.stop()


def test_files_a_reload_rereads_are_checked_for_the_new_user(tmp_path, throwaway_user):
    if not IS_SLUICE:
        pytest.skip("Sluice's own warning")
    shared = Path(tempfile.mkdtemp(prefix="sluice-priv-"))  # /tmp/pytest-of-root is root's only
    try:
        shared.chmod(0o755)
        acl = shared / "acl"
        acl.write_text("topic readwrite #\n")
        acl.chmod(0o644)
        passwords = shared / "passwd"
        passwords.write_text("")
        passwords.chmod(0o600)  # root's only: the dropped user cannot read it at the next SIGHUP
        b = broker_with_user(tmp_path, f"acl_file {acl}\npassword_file {passwords}\nallow_anonymous true\n"
                                       f"user {throwaway_user.pw_name}\n").start()
        try:
            # The check runs right after the drop, which may be logged just after the listener is up.
            warned = f"cannot read {passwords}: a SIGHUP reload will fail"
            assert wait_until(lambda: warned in b.log(), 10), b.log()
            assert f"cannot read {acl}" not in b.log()
        finally:
            b.stop()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
