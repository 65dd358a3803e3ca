"""`psk_hint`/`psk_file`: a TLS-PSK listener (issue 16 item 5), used by mosquitto_pub/mosquitto_sub
with --psk. The same script runs against Debian's mosquitto (SLUICE_TEST_BROKER=mosquitto)."""

import subprocess

from conftest import free_port, uid

KEY = "8f3c2a9b7d1e4f6a0b5c9d2e7f1a3b4c"


def psk_args(port: int, identity: str, key: str) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port), "--psk-identity", identity, "--psk", key]


def start_psk(start_broker, tmp_path):
    psk_file = tmp_path / "psk"
    psk_file.write_text(f"# gateways\nsensor1:{KEY}\nsensor2:00112233\n")
    port = free_port()
    b = start_broker(f"psk_file {psk_file}\nlistener {port} 127.0.0.1\npsk_hint gateway\n")
    return b, port


def test_psk_listener_carries_messages(start_broker, tmp_path):
    b, port = start_psk(start_broker, tmp_path)
    topic = f"psk/{uid()}"
    sub = subprocess.Popen(["mosquitto_sub", *psk_args(port, "sensor2", "00112233"), "-t", topic, "-C", "1", "-W", "8"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        time.sleep(1.0)
        pub = subprocess.run(["mosquitto_pub", *psk_args(port, "sensor1", KEY), "-t", topic, "-m", "over psk", "-q", "1"],
                             capture_output=True, text=True, timeout=10)
        assert pub.returncode == 0, pub.stderr + b.log()
        out, err = sub.communicate(timeout=15)
        assert out.strip() == "over psk", err + b.log()
    finally:
        if sub.poll() is None:
            sub.kill()


def test_psk_listener_refuses_a_wrong_key_or_identity(start_broker, tmp_path):
    b, port = start_psk(start_broker, tmp_path)
    for identity, key in (("sensor1", "00112233445566778899aabbccddeeff"), ("stranger", KEY)):
        pub = subprocess.run(["mosquitto_pub", *psk_args(port, identity, key), "-t", "t", "-m", "x", "-q", "1"],
                             capture_output=True, text=True, timeout=10)
        assert pub.returncode != 0, (identity, pub.stdout, pub.stderr)
    assert b.alive()
