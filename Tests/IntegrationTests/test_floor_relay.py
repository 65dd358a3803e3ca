"""scripts/floor-relay.c, the do-nothing relay that BENCHMARKS.md measures the paced rows' floor with, relays what
those rows send: every QoS 0 and QoS 1 PUBLISH reaches the subscriber and each QoS 1 one is acknowledged, in both
of its write modes. A relay that lost or held messages would make the floor it measures meaningless.

Real peers: the compiled relay on a free loopback port, paho publisher and subscriber. Waits are bounded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import free_port, port_listening

SOURCE = Path(__file__).resolve().parents[2] / "scripts" / "floor-relay.c"


@pytest.fixture(scope="module")
def relay_binary(tmp_path_factory) -> Path:
    compiler = shutil.which("cc") or shutil.which("clang") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc, clang or gcc) on PATH to build scripts/floor-relay.c")
    out = tmp_path_factory.mktemp("relay") / "floor-relay"
    subprocess.run([compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", str(out), str(SOURCE)],
                   check=True, timeout=120)
    return out


def client(port: int, name: str) -> tuple[mqtt.Client, list[bytes], threading.Event]:
    received: list[bytes] = []
    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
    c.on_message = lambda _c, _u, msg: received.append(msg.payload)
    c.on_subscribe = lambda *_args: subscribed.set()
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c, received, subscribed


@pytest.mark.parametrize("batch", ["0", "1"], ids=["write-per-packet", "batched"])
def test_relay_forwards_and_acknowledges_every_message(relay_binary, tmp_path, batch):
    port = free_port()
    conf = tmp_path / "relay.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([str(relay_binary), "run", "-c", str(conf)], env={**os.environ, "FLOOR_RELAY_BATCH": batch})
    clients = []
    try:
        deadline = time.monotonic() + 10
        while not port_listening(port):
            assert proc.poll() is None, "floor-relay exited at start"
            assert time.monotonic() < deadline, "floor-relay did not listen within 10 s"
            time.sleep(0.05)
        sub, received, subscribed = client(port, "sub")
        clients.append(sub)
        sub.subscribe("bench/t", 1)
        assert subscribed.wait(5), "no SUBACK"
        pub, _, _ = client(port, "pub")
        clients.append(pub)

        infos = [pub.publish("bench/t", f"q{i % 2}-{i}".encode(), i % 2) for i in range(400)]
        deadline = time.monotonic() + 20
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        assert all(info.is_published() for info in infos), "a PUBLISH was not sent or not acknowledged"
        while len(received) < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(received) == sorted(f"q{i % 2}-{i}".encode() for i in range(400))
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        proc.terminate()
        proc.wait(timeout=10)
