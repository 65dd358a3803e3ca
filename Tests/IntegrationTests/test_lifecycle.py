"""The gateway's parts as services in one ServiceGroup (issue 17, item 1): on SIGTERM every client
hears the server's DISCONNECT, acknowledged messages stay in the bridge queue, the parts stop in
reverse start-up order; a part that fails to start stops the ones already started and the process
exits non-zero with one log line naming the part."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

import mqttraw
from bridgeharness import free_port, uid, wait_until
from conftest import Broker, IS_SLUICE, require_sluice_binary

pytestmark = pytest.mark.skipif(not IS_SLUICE, reason="checks Sluice's own start-up and shutdown")

CLIENTS = 30
MESSAGES = 10


def test_sigterm_disconnects_every_client_keeps_what_was_acknowledged_and_stops_in_reverse(tmp_path):
    dead, metrics = free_port(), free_port()
    extra = (f"metrics_listener {metrics} 127.0.0.1\nconnection central\naddress 127.0.0.1:{dead}\n"
             f"restart_timeout 1 2\ntopic sensors/# out 1\n")
    b = Broker(tmp_path, extra).start()
    clients = []
    try:
        assert wait_until(lambda: "ready:" in b.log(), 10), b.log()
        for index in range(CLIENTS):
            c = mqttraw.RawClient(b.host, b.port, version=5)
            assert c.connect(uid(f"stay{index}")).reason == 0
            clients.append(c)
        publisher = clients[0]
        for i in range(MESSAGES):
            publisher.send(mqttraw.publish("sensors/t", b"%d" % i, qos=1, packet_id=i + 1, version=5))
            assert publisher.expect(mqttraw.PUBACK).reason == 0
        b.proc.send_signal(15)
        assert b.proc.wait(timeout=10) == 0, b.log()
        for c in clients:
            got = c.read_until_close(timeout=2)
            assert [(p.ptype, p.reason) for p in got] == [(mqttraw.DISCONNECT, 0x8B)], got
    finally:
        for c in clients:
            c.close()
        b.stop()
    log = b.log()
    order = [log.index(needle) for needle in
             ("shutting down", "gateway shutting down", "stopped")]
    assert order == sorted(order), log
    # Every acknowledged message was committed to the bridge queue before the store closed.
    b.start()
    try:
        assert wait_until(lambda: "restored" in b.log(), 10), b.log()
        restored = [line for line in b.log().splitlines() if "bridge central to" in line][-1]
        assert re.search(rf"bridge central to 127\.0\.0\.1:{dead}: {MESSAGES} queued messages restored", restored), restored
    finally:
        b.stop()


def test_a_part_that_fails_to_start_stops_the_started_ones_and_exits_non_zero(tmp_path):
    first = free_port()
    conf = tmp_path / "gw.conf"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        conf.write_text(f"listener {first} 127.0.0.1\nlistener {taken} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence true\npersistence_location {tmp_path}/\n"
                        f"connection central\naddress 127.0.0.1:{free_port()}\ntopic sensors/# out 1\n")
        r = subprocess.run([str(require_sluice_binary()), "run", "-c", str(conf)], capture_output=True,
                           text=True, timeout=20)
    assert r.returncode == 1, r.stderr
    cause = f"cannot listen on 127.0.0.1:{taken} (listener): address already in use"
    failed = [line for line in r.stderr.splitlines() if "failed to start" in line]
    assert len(failed) == 1 and failed[0].endswith(
        f"listener 127.0.0.1:{taken} failed to start, stopping the gateway: {cause}"), r.stderr
    assert r.stderr.splitlines()[-1] == f"sluice: {cause}", r.stderr
    # The first listener had bound and was closed again; the gateway never said it was ready.
    assert f"listening on 127.0.0.1:{first}" in r.stderr and "ready:" not in r.stderr, r.stderr
    assert "stopped" in r.stderr, r.stderr
    # The store closed cleanly (lock released): the same configuration starts once the port is free.
    b = Broker(tmp_path, port=first)
    b.conf_path = conf
    b.start()
    try:
        assert wait_until(lambda: "ready:" in b.log(), 10), b.log()
    finally:
        b.stop()


def test_a_tls_client_that_never_answers_close_notify_does_not_hold_the_exit(tmp_path):
    import ssl
    import time

    from conftest import REPO
    tls = REPO / "fixtures" / "tls"
    port = free_port()
    b = Broker(tmp_path, f"listener {port} 127.0.0.1\ncertfile {tls / 'server.pem'}\n"
                         f"keyfile {tls / 'server.key.pem'}\ncafile {tls / 'ca.pem'}\n").start()
    context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    silent = context.wrap_socket(raw, server_hostname="localhost")
    try:
        assert wait_until(lambda: "ready:" in b.log(), 10), b.log()
        silent.sendall(mqttraw.connect(uid("silent"), version=5))
        assert silent.recv(64)[0] == 0x20  # CONNACK; from here on the client reads nothing
        sent = time.monotonic()
        b.proc.send_signal(15)
        assert b.proc.wait(timeout=15) == 0, b.log()
        # The wait for client sockets is bounded at 2 s (NIOSSL would wait 5 s for the peer's close_notify).
        assert time.monotonic() - sent < 4, b.log()
    finally:
        silent.close()
        b.stop()
