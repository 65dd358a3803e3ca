"""LoRaWAN Semtech UDP (GWMP v2) listener, `lorawan_udp_listener PORT [ADDRESS]`.

A Python "packet forwarder" on loopback talks to the real sluice binary; events are read with
mosquitto_sub on the local broker and downlinks are published with mosquitto_pub, on the
ChirpStack topic layout `eu868/gateway/EUI/{event/up,event/stats,event/ack,state/conn,command/down}`.
The last test bridges `eu868/gateway/#` to a real central Mosquitto that is down while uplinks
arrive: they are queued in LMDB (across a gateway restart) and all arrive once it is up.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import subprocess
import time
import urllib.request

import pytest

import bridgeharness as bh
from bridgeharness import bridge_env  # noqa: F401 (fixture)
from conftest import SubProcess, free_port, mosq_pub, require_sluice_binary, sub_ready

pytestmark = pytest.mark.sluice_only(reason="lorawan_udp_listener is a Sluice addition")

EUI_HEX = "b827ebfffe6a1b2c"
EUI = bytes.fromhex(EUI_HEX)
PREFIX = f"eu868/gateway/{EUI_HEX}"
PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = range(6)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def header(token: int, ident: int) -> bytes:
    return bytes([2]) + struct.pack(">H", token) + bytes([ident])


def rxpk(tmst: int, payload: bytes, freq: float = 868.1, sf: int = 7) -> dict:
    return {"time": "2024-05-14T09:12:44.218446Z", "tmst": tmst, "chan": 0, "rfch": 0, "freq": freq,
            "stat": 1, "modu": "LORA", "datr": f"SF{sf}BW125", "codr": "4/5", "rssi": -57, "lsnr": 7.5,
            "size": len(payload), "data": base64.b64encode(payload).decode()}


class Forwarder:
    """A packet forwarder's UDP socket on loopback (one socket for up and down, like lora_pkt_fwd)."""

    def __init__(self, port: int, eui: bytes = EUI):
        self.server = ("127.0.0.1", port)
        self.eui = eui
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def close(self):
        self.sock.close()

    def send(self, data: bytes):
        self.sock.sendto(data, self.server)

    def push_data(self, token: int, body: dict):
        self.send(header(token, PUSH_DATA) + self.eui + json.dumps(body).encode())

    def pull_data(self, token: int):
        self.send(header(token, PULL_DATA) + self.eui)

    def tx_ack(self, token: int, error: str = "NONE"):
        self.send(header(token, TX_ACK) + self.eui + json.dumps({"txpk_ack": {"error": error}}).encode())

    def recv(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
            return data
        except socket.timeout:
            return None

    def expect(self, ident: int, token: int | None = None, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            data = self.recv(max(0.05, deadline - time.monotonic()))
            if data is None:
                break
            seen.append(data[:4])
            if len(data) >= 4 and data[0] == 2 and data[3] == ident and (
                    token is None or data[1:3] == struct.pack(">H", token)):
                return data
        raise AssertionError(f"no datagram with identifier {ident} (token {token}) within {timeout}s; "
                             f"got headers {seen}")

    def expect_nothing(self, within: float) -> None:
        data = self.recv(within)
        assert data is None, f"expected no answer, got {data[:16]!r}"


@pytest.fixture
def lorawan(start_broker):
    """Factory: a broker with the LoRaWAN listener (2 s gateway timeout) and a forwarder socket."""
    made: list[Forwarder] = []

    def _start(extra: str = ""):
        udp = free_udp_port()
        b = start_broker(f"lorawan_udp_listener {udp}\nlorawan_gateway_timeout 2\n{extra}")
        fwd = Forwarder(udp)
        made.append(fwd)
        return b, fwd

    yield _start
    for f in made:
        f.close()


def sub_lines(sp: SubProcess) -> list[tuple[str, str, dict]]:
    """(topic, retain flag, JSON payload) per line of a `-F '%t|%r|%p'` mosquitto_sub."""
    lines, _code, err = sp.result()
    out = []
    for line in lines:
        topic, retain, payload = line.split("|", 2)
        out.append((topic, retain, json.loads(payload)))
    return out


def subscribe(b, topic: str, count: int, wait_s: int = 8) -> SubProcess:
    return SubProcess(b, topic, "-F", "%t|%r|%p", count=count, wait_s=wait_s)


def test_uplinks_stats_conn_downlink_and_ack(lorawan):
    b, fwd = lorawan()
    ups = subscribe(b, f"{PREFIX}/event/up", 2)
    stats = subscribe(b, f"{PREFIX}/event/stats", 1)
    sub_ready()

    # PUSH_DATA with two rxpk: PUSH_ACK with the same token, one event/up per rxpk.
    frames = [bytes([0x40, 1, 2, 3, 4, 0, 1, 0, 1, 0xAA, 0xBB, 0xCC, 0xDD]), bytes([0x80, 9, 8, 7, 6, 0, 2, 0, 1])]
    fwd.push_data(0x1234, {"rxpk": [rxpk(2412069003, frames[0]), rxpk(2412070113, frames[1], freq=867.5, sf=12)]})
    assert fwd.expect(PUSH_ACK, 0x1234) == header(0x1234, PUSH_ACK)
    fwd.push_data(0x1235, {"stat": {"time": "2024-05-14 09:12:44 GMT", "lati": 46.24, "long": 3.2523, "alti": 145,
                                    "rxnb": 2, "rxok": 2, "rxfw": 2, "ackr": 100.0, "dwnb": 0, "txnb": 0}})
    assert fwd.expect(PUSH_ACK, 0x1235) == header(0x1235, PUSH_ACK)

    events = sub_lines(ups)
    assert [e[0] for e in events] == [f"{PREFIX}/event/up"] * 2
    first, second = events[0][2], events[1][2]
    assert base64.b64decode(first["phyPayload"]) == frames[0]
    assert base64.b64decode(second["phyPayload"]) == frames[1]
    assert first["txInfo"] == {"frequency": 868100000, "modulation": {
        "lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}}
    assert second["txInfo"]["modulation"]["lora"]["spreadingFactor"] == 12
    rx = first["rxInfo"]
    assert rx["gatewayId"] == EUI_HEX and rx["rssi"] == -57 and rx["snr"] == 7.5 and rx["crcStatus"] == "CRC_OK"
    assert rx["gwTime"] == "2024-05-14T09:12:44.218446Z"
    assert base64.b64decode(rx["context"]) == struct.pack(">I", 2412069003)
    assert rx["uplinkId"] != second["rxInfo"]["uplinkId"]

    (topic, _retain, stat), = sub_lines(stats)
    assert stat["gatewayId"] == EUI_HEX and stat["time"] == "2024-05-14T09:12:44Z"
    assert stat["rxPacketsReceived"] == 2 and stat["location"]["latitude"] == 46.24

    # PULL_DATA: PULL_ACK, and state/conn ONLINE is retained.
    fwd.pull_data(0x0777)
    assert fwd.expect(PULL_ACK, 0x0777) == header(0x0777, PULL_ACK)
    conn = subscribe(b, f"{PREFIX}/state/conn", 1, wait_s=5)
    ((_t, retain, state),) = sub_lines(conn)
    assert retain == "1" and state == {"gatewayId": EUI_HEX, "state": "ONLINE"}

    # A Class A downlink (RX1 1 s after the uplink, RX2 as fallback) on command/down: PULL_RESP
    # with the RX1 txpk at the forwarder's socket.
    acks = subscribe(b, f"{PREFIX}/event/ack", 1)
    sub_ready()
    downlink = {"downlinkId": 4242, "gatewayId": EUI_HEX, "items": [
        {"phyPayload": base64.b64encode(b"\x60\x01\x02\x03\x04\x20\x01\x00").decode(),
         "txInfo": {"frequency": 868100000, "power": 14,
                    "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5",
                                            "polarizationInversion": True}},
                    "timing": {"delay": {"delay": "1s"}}, "context": rx["context"]}},
        {"phyPayload": base64.b64encode(b"\x60\x01\x02\x03\x04\x20\x01\x00").decode(),
         "txInfo": {"frequency": 869525000, "power": 27,
                    "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 12, "codeRate": "CR_4_5",
                                            "polarizationInversion": True}},
                    "timing": {"delay": {"delay": "2s"}}, "context": rx["context"]}}]}
    mosq_pub(b, f"{PREFIX}/command/down", "-q", "1", message=json.dumps(downlink))
    resp = fwd.expect(PULL_RESP)
    txpk = json.loads(resp[4:])["txpk"]
    assert txpk["tmst"] == 2412069003 + 1_000_000
    assert txpk["freq"] == 868.1 and txpk["powe"] == 14 and txpk["datr"] == "SF7BW125" and txpk["codr"] == "4/5"
    assert txpk["modu"] == "LORA" and txpk["ipol"] is True and txpk["size"] == 8
    assert base64.b64decode(txpk["data"]) == b"\x60\x01\x02\x03\x04\x20\x01\x00"

    # TX_ACK with the PULL_RESP's token: event/ack with one status per item.
    fwd.tx_ack(struct.unpack(">H", resp[1:3])[0], "NONE")
    ((_t, _r, ack),) = sub_lines(acks)
    assert ack == {"gatewayId": EUI_HEX, "downlinkId": 4242, "items": [{"status": "OK"}, {"status": "IGNORED"}]}


def test_tx_ack_error_sends_the_next_item(lorawan):
    b, fwd = lorawan()
    fwd.pull_data(1)
    fwd.expect(PULL_ACK, 1)
    acks = subscribe(b, f"{PREFIX}/event/ack", 1)
    sub_ready()
    item = {"phyPayload": "YAEAACagAQABkFDrrZr9OEs=", "txInfo": {
        "frequency": 868100000, "power": 14, "timing": {"immediately": {}},
        "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}}}
    rx2 = json.loads(json.dumps(item))
    rx2["txInfo"]["frequency"] = 869525000
    mosq_pub(b, f"{PREFIX}/command/down", "-q", "1",
             message=json.dumps({"downlinkId": 7, "items": [item, rx2]}))
    first = fwd.expect(PULL_RESP)
    assert json.loads(first[4:])["txpk"]["imme"] is True
    fwd.tx_ack(struct.unpack(">H", first[1:3])[0], "TOO_LATE")
    second = fwd.expect(PULL_RESP)
    assert json.loads(second[4:])["txpk"]["freq"] == 869.525
    fwd.tx_ack(struct.unpack(">H", second[1:3])[0], "COLLISION_PACKET")
    ((_t, _r, ack),) = sub_lines(acks)
    assert ack["downlinkId"] == 7
    assert ack["items"] == [{"status": "TOO_LATE"}, {"status": "COLLISION_PACKET"}]


def test_state_goes_offline_when_keepalives_stop(lorawan):
    b, fwd = lorawan()
    conn = subscribe(b, f"{PREFIX}/state/conn", 2, wait_s=10)
    sub_ready()
    started = time.monotonic()
    fwd.pull_data(0x0100)
    fwd.expect(PULL_ACK, 0x0100)
    states = sub_lines(conn)
    elapsed = time.monotonic() - started
    assert [s[2]["state"] for s in states] == ["ONLINE", "OFFLINE"]
    assert 2.0 <= elapsed <= 6.0, f"offline after {elapsed:.1f}s with lorawan_gateway_timeout 2"
    # The retained state is now OFFLINE; a keep-alive brings it back ONLINE.
    later = subscribe(b, f"{PREFIX}/state/conn", 2, wait_s=5)
    sub_ready()
    fwd.pull_data(0x0101)
    fwd.expect(PULL_ACK, 0x0101)
    assert [(s[1], s[2]["state"]) for s in sub_lines(later)] == [("1", "OFFLINE"), ("0", "ONLINE")]


def test_shutdown_publishes_offline(lorawan):
    """A gateway online when Sluice stops is left OFFLINE in the retained (persisted) state."""
    b, fwd = lorawan()
    fwd.pull_data(0x0200)
    fwd.expect(PULL_ACK, 0x0200)
    online = subscribe(b, f"{PREFIX}/state/conn", 1, wait_s=5)
    assert sub_lines(online)[0][2]["state"] == "ONLINE"
    b.stop()
    b.start()
    after = subscribe(b, f"{PREFIX}/state/conn", 1, wait_s=5)
    ((_t, retain, state),) = sub_lines(after)
    assert retain == "1" and state["state"] == "OFFLINE"


def test_malformed_datagrams_get_no_ack_and_are_counted(lorawan):
    metrics_port = free_port()
    b, fwd = lorawan(f"metrics_listener {metrics_port}")
    valid_push = header(0x2222, PUSH_DATA) + EUI + b'{"rxpk":[]}'
    bad = {
        "too_short": [b"", bytes([2, 0x22]), header(0x2222, PULL_DATA) + EUI[:5]],
        "unsupported_version": [bytes([1]) + valid_push[1:], bytes([3]) + valid_push[1:]],
        "unknown_identifier": [header(0x2222, 9) + EUI],
        "bad_json": [header(0x2222, PUSH_DATA) + EUI + b'{"rxpk":[{"freq":', header(0x2222, PUSH_DATA) + EUI,
                     header(0x2222, PUSH_DATA) + EUI + b'{"rxpk":{"freq":868.1}}'],
        "too_large": [header(0x2222, PUSH_DATA) + EUI + b'{"rxpk":[]}' + b" " * 40000],
        "trailing_bytes": [header(0x2222, PULL_DATA) + EUI + b"\x00"],
    }
    for datagrams in bad.values():
        for d in datagrams:
            fwd.send(d)
    fwd.expect_nothing(1.0)
    # Still serving: a valid PUSH_DATA and PULL_DATA are acknowledged.
    fwd.send(valid_push)
    assert fwd.expect(PUSH_ACK, 0x2222) == header(0x2222, PUSH_ACK)
    fwd.pull_data(0x3333)
    assert fwd.expect(PULL_ACK, 0x3333) == header(0x3333, PULL_ACK)
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for reason, datagrams in bad.items():
        line = f'sluice_lorawan_dropped_total{{reason="{reason}"}} {len(datagrams)}'
        assert line in body, f"missing {line!r} in:\n" + "\n".join(l for l in body.splitlines() if "lorawan" in l)
    assert 'sluice_lorawan_gateways_online 1' in body
    assert b.alive()


def test_bad_downlinks_send_nothing(lorawan):
    b, fwd = lorawan()
    fwd.pull_data(1)
    fwd.expect(PULL_ACK, 1)
    for payload in ["not json", '{"downlinkId":1,"items":[]}',
                    '{"downlinkId":1,"gatewayId":"0000000000000001","items":[{"phyPayload":"AQ==",'
                    '"txInfo":{"frequency":868100000,"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7}}}}]}']:
        mosq_pub(b, f"{PREFIX}/command/down", "-q", "1", message=payload)
    # A downlink for a gateway that never sent PULL_DATA goes nowhere.
    mosq_pub(b, "eu868/gateway/0000000000000002/command/down", "-q", "1",
             message='{"downlinkId":2,"items":[{"phyPayload":"AQ==","txInfo":{"frequency":868100000,'
                     '"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7}}}}]}')
    fwd.expect_nothing(1.0)
    fwd.pull_data(2)
    fwd.expect(PULL_ACK, 2)


def test_network_clients_cannot_use_the_internal_client_id(lorawan):
    b, _fwd = lorawan()
    r = subprocess.run(
        ["mosquitto_pub", "-h", b.host, "-p", str(b.port), "-i", "$sluice/lorawan", "-t", "x", "-m", "y"],
        capture_output=True, text=True, timeout=10)
    assert r.returncode != 0, "a network client took the in-process client's identifier"


def test_bad_listener_line_is_a_config_error(tmp_path):
    for line, says in [("lorawan_udp_listener", "lorawan_udp_listener"), ("lorawan_udp_listener 70000", "70000"),
                       ("lorawan_udp_listener x", "lorawan_udp_listener"), ("lorawan_gateway_timeout 0", "lorawan_gateway_timeout")]:
        conf = tmp_path / "bad.conf"
        conf.write_text(f"listener {free_port()} 127.0.0.1\n{line}\n")
        r = subprocess.run([str(require_sluice_binary()), "check", "-c", str(conf)],
                                         capture_output=True, text=True, timeout=10)
        assert r.returncode != 0, f"{line!r} was accepted"
        assert "bad.conf:2" in r.stderr + r.stdout and says in r.stderr + r.stdout, r.stderr + r.stdout


def test_uplinks_are_buffered_while_central_is_down(bridge_env):
    """Bridge rule `eu868/gateway/# out 1`: uplinks queue durably (here across a gateway restart)
    while the central broker is down and all arrive once it is up."""
    udp = free_udp_port()
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "eu868/gateway/+/event/up")  # persistent session
    central.stop()
    spec = bh.BridgeSpec([central.port], topics=["eu868/gateway/# out 1"])
    gw = bridge_env.gateway([spec], extra=[f"lorawan_udp_listener {udp}"]).start()
    fwd = Forwarder(udp)
    try:
        n = 0
        for datagram in range(10):
            packets = []
            for _ in range(2):
                n += 1
                packets.append(rxpk(1000 + n, b"\x40" + struct.pack(">I", n)))
            fwd.push_data(0x4000 + datagram, {"rxpk": packets})
            fwd.expect(PUSH_ACK, 0x4000 + datagram)
    finally:
        fwd.close()
    time.sleep(0.5)  # the PUSH_ACK precedes the durable append by design: let the queue commit
    gw.stop()
    gw.start()
    central.start()

    def seqs() -> set[int]:
        out = set()
        with counter.lock:
            messages = list(counter.received)
        for topic, payload, _dup, _retain in messages:
            phy = base64.b64decode(json.loads(payload)["phyPayload"])
            out.add(struct.unpack(">I", phy[1:5])[0])
        return out

    assert bh.wait_until(lambda: len(seqs()) >= 20, 30, 0.2), \
        f"received {sorted(seqs())} of 1..20\n{bridge_env.logs()}"
    assert seqs() == set(range(1, 21))


def test_downlinks_from_the_central_broker_reach_the_gateway(bridge_env):
    """The deployment path: events go out to the central broker, a network server there
    publishes command/down, a bridge `in` rule brings it to the listener, PULL_RESP follows."""
    udp = free_udp_port()
    central = bridge_env.central().start()
    counter = bridge_env.counter(central.port, "eu868/gateway/+/state/conn")
    spec = bh.BridgeSpec([central.port], topics=["eu868/gateway/# out 1", "eu868/gateway/+/command/down in 1"])
    gw = bridge_env.gateway([spec], extra=[f"lorawan_udp_listener {udp}"]).start()
    gw.wait_connected()
    fwd = Forwarder(udp)
    try:
        fwd.pull_data(0x0501)
        fwd.expect(PULL_ACK, 0x0501)
        assert bh.wait_until(lambda: len(counter.received) >= 1, 10, 0.1), bridge_env.logs()
        assert json.loads(counter.received[0][1])["state"] == "ONLINE"
        downlink = {"downlinkId": 99, "items": [{"phyPayload": "YAEAACagAQABkFDrrZr9OEs=", "txInfo": {
            "frequency": 869525000, "power": 27, "timing": {"immediately": {}},
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 12, "codeRate": "CR_4_5",
                                    "polarizationInversion": True}}}}]}
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(central.port), "-q", "1",
                            "-t", f"{PREFIX}/command/down", "-m", json.dumps(downlink)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        txpk = json.loads(fwd.expect(PULL_RESP, timeout=10)[4:])["txpk"]
        assert txpk["imme"] is True and txpk["datr"] == "SF12BW125" and txpk["freq"] == 869.525
    finally:
        fwd.close()
