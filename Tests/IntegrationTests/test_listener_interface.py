"""`bind_interface`: a listener accepts connections arriving on the named interface only
(issue 16 item 4). The refusal of a missing interface is checked against Debian's mosquitto too."""

import os
import subprocess
import uuid

import pytest

import mqttraw
from conftest import free_port, uid


@pytest.fixture
def dummy_interface():
    """An interface that loopback traffic never arrives on: a veth pair with no address made (and
    removed) by the test, else an existing interface other than lo."""
    if os.geteuid() != 0:
        pytest.skip("creating an interface needs root")
    name = f"slt{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                          capture_output=True, text=True)
    if made.returncode == 0:
        try:
            yield name
        finally:
            subprocess.run(["ip", "link", "delete", name], capture_output=True)
        return
    others = [n for n in os.listdir("/sys/class/net") if n != "lo"]
    if not others:
        pytest.skip(f"no interface but lo, and cannot create one: {made.stderr.strip()}")
    yield sorted(others)[0]


@pytest.mark.sluice_only(reason="Mosquitto 2.0.11 also requires an IPv4 address on the interface, and the "
                         "test's interface has none (these tests use no address outside loopback)")
def test_bind_interface_accepts_only_that_interfaces_connections(start_broker, dummy_interface):
    on_lo, on_dummy = free_port(), free_port()
    b = start_broker(f"listener {on_lo} 127.0.0.1\nbind_interface lo\n"
                     f"listener {on_dummy} 127.0.0.1\nbind_interface {dummy_interface}\n")
    with mqttraw.RawClient(b.host, on_lo) as c:  # loopback traffic arrives on lo
        assert c.connect(uid("lo")).reason == 0
    with pytest.raises(ConnectionRefusedError):
        mqttraw.RawClient(b.host, on_dummy, timeout=2)  # bound to an interface loopback never uses
    with mqttraw.RawClient(b.host, b.port) as c:  # the listener without bind_interface is unaffected
        assert c.connect(uid("any")).reason == 0


def test_bind_interface_that_does_not_exist_stops_the_start(tmp_path):
    from conftest import Broker
    missing = f"nx{uuid.uuid4().hex[:8]}"
    b = Broker(tmp_path, f"listener {free_port()} 127.0.0.1\nbind_interface {missing}\n")
    with pytest.raises(RuntimeError) as failed:
        b.start()
    b.stop()
    assert "exited" in str(failed.value)
