#!/usr/bin/env python3
"""Time from SIGTERM to exit of `sluice run` with N MQTT 5 clients connected.

Starts the binary on a free loopback port (persistence on, in a temp folder), connects N clients
(raw sockets, CONNECT + CONNACK), sends SIGTERM, and reports the time until the process exited and
how many clients received the server's DISCONNECT (0x8B, server shutting down) before their socket
closed. Usage: scripts/shutdown-time.py [--clients 1000] [--rounds 3] [--binary .build/debug/sluice]
"""
import argparse
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CONNECT_PROPERTIES = b"\x00"  # MQTT 5: no properties


def connect_packet(client_id: str) -> bytes:
    ident = client_id.encode()
    variable = b"\x00\x04MQTT\x05\x02\x00\x3c" + CONNECT_PROPERTIES
    body = variable + len(ident).to_bytes(2, "big") + ident
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    want = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"sluice exited at start with {proc.returncode}")
        with open("/proc/net/tcp") as f:
            if any(line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:]):
                return
        time.sleep(0.05)
    sys.exit("sluice did not listen in time")


def one_round(binary: str, clients: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        conf = os.path.join(folder, "gateway.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {folder}/\nmax_connections -1\n")
        log = open(os.path.join(folder, "sluice.log"), "wb")
        proc = subprocess.Popen([binary, "run", "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            wait_listening(port, proc)
            sockets = []
            for index in range(clients):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(connect_packet(f"shutdown-{index}"))
                sockets.append(sock)
            for sock in sockets:
                ack = sock.recv(64)
                if len(ack) < 4 or ack[0] != 0x20:
                    sys.exit(f"no CONNACK: {ack!r}")
                sock.setblocking(False)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            elapsed = time.monotonic() - sent
            disconnects = 0
            selector = selectors.DefaultSelector()
            for sock in sockets:
                selector.register(sock, selectors.EVENT_READ)
            pending = set(sockets)
            deadline = time.monotonic() + 5
            received = {sock: b"" for sock in sockets}
            while pending and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.5):
                    try:
                        data = key.fileobj.recv(64)
                    except OSError:
                        data = b""
                    if data:
                        received[key.fileobj] += data
                    else:
                        selector.unregister(key.fileobj)
                        pending.discard(key.fileobj)
            disconnects = sum(1 for data in received.values() if data[:1] == b"\xe0" and b"\x8b" in data[:4])
            for sock in sockets:
                sock.close()
            return elapsed, disconnects, proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=".build/debug/sluice")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients * 2 + 256)), hard))
    times = []
    for round_number in range(args.rounds):
        elapsed, disconnects, code = one_round(args.binary, args.clients)
        times.append(elapsed)
        print(f"round {round_number + 1}: SIGTERM to exit {elapsed * 1000:.0f} ms, "
              f"DISCONNECT 0x8B received by {disconnects}/{args.clients}, exit status {code}")
    print(f"median SIGTERM to exit: {statistics.median(times) * 1000:.0f} ms over {args.rounds} rounds")


if __name__ == "__main__":
    main()
