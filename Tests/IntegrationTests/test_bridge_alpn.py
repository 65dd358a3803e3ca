"""`bridge_alpn`: the bridge offers the configured ALPN protocol in its TLS handshake (issue 16
item 4), as AWS IoT Core on port 443 requires (`x-amzn-mqtt-ca`). The peer is a TLS front that,
like such a service, closes every handshake that did not offer the protocol, in front of Debian's
mosquitto as the central; a counter on the central counts the messages."""

import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from bridgeharness import BridgeSpec, REPO, assert_delivery, bridge_env, publish_numbered, require_sluice_binary, wait_until  # noqa: F401

TLS = REPO / "fixtures" / "tls"
PROTOCOL = "x-amzn-mqtt-ca"


class ALPNFront:
    """Accepts TLS on a free loopback port; records what each handshake selected; relays the
    connections that offered `PROTOCOL` to the plain central, closes the others."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(TLS / "server.pem", TLS / "server.key.pem")
        self.context.set_alpn_protocols([PROTOCOL])
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.selected: list[str | None] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            raw.settimeout(5)
            try:
                tls = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            self.selected.append(tls.selected_alpn_protocol())
            if tls.selected_alpn_protocol() != PROTOCOL:
                tls.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            for a, b in ((tls, upstream), (upstream, tls)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    def _pipe(self, src, dst):
        src.settimeout(0.5)
        while not self.stopping.is_set():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.stopping.set()
        self.listener.close()
        for t in self.threads:
            t.join(timeout=2)


def test_bridge_offers_its_alpn_protocol(bridge_env):
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    front = ALPNFront(central.port)
    try:
        spec = BridgeSpec([front.port], extra=[f"bridge_cafile {TLS / 'ca.pem'}", f"bridge_alpn {PROTOCOL}"])
        gw = bridge_env.gateway([spec]).start()
        gw.wait_connected()
        publish_numbered(gw.port, "sensors/t", 1, 20)
        assert counter.wait_distinct(20, 15), bridge_env.logs()
        assert front.selected and set(front.selected) == {PROTOCOL}
        assert_delivery(counter, list(range(1, 21)), max_duplicates=0)
    finally:
        front.close()


def test_without_bridge_alpn_such_a_peer_refuses_and_the_messages_wait(bridge_env):
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    front = ALPNFront(central.port)
    try:
        spec = BridgeSpec([front.port], extra=[f"bridge_cafile {TLS / 'ca.pem'}"], restart_timeout="1 1")
        gw = bridge_env.gateway([spec]).start()
        publish_numbered(gw.port, "sensors/t", 1, 3)
        assert wait_until(lambda: len(front.selected) >= 2, 10)
        assert set(front.selected) == {None}
        assert gw.connected_count() == 0 and counter.distinct() == 0
        stats = subprocess.run([str(require_sluice_binary()), "queue", "stats", "-c", str(gw.conf_path), "central"],
                               capture_output=True, text=True, timeout=10)
        assert "depth=3" in stats.stdout, stats  # kept, not lost
    finally:
        front.close()
