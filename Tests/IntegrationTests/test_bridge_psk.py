"""`bridge_identity`/`bridge_psk`: a bridge over TLS-PSK (issue 16 item 5) to Debian's mosquitto
with a PSK listener (`psk_hint`/`psk_file`); a counter on the central's plain listener counts."""

import subprocess

from bridgeharness import BridgeSpec, assert_delivery, bridge_env, free_port, publish_numbered, require_sluice_binary, wait_until  # noqa: F401

KEY = "8f3c2a9b7d1e4f6a0b5c9d2e7f1a3b4c"


def psk_central(env, identity: str = "gw1", key: str = KEY):
    central = env.central()
    psk_port = free_port()
    psk_file = central.workdir / "psk"
    psk_file.write_text(f"{identity}:{key}\n")
    central.conf_text += f"psk_file {psk_file}\nlistener {psk_port} 127.0.0.1\npsk_hint central\n"
    central.start()
    return central, psk_port


def test_bridge_over_tls_psk(bridge_env):
    central, psk_port = psk_central(bridge_env)
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    spec = BridgeSpec([psk_port], extra=["bridge_identity gw1", f"bridge_psk {KEY}"])
    gw = bridge_env.gateway([spec]).start()
    gw.wait_connected()
    publish_numbered(gw.port, "sensors/t", 1, 50)
    assert counter.wait_distinct(50, 20), bridge_env.logs()
    assert_delivery(counter, list(range(1, 51)), max_duplicates=0)


def test_wrong_psk_never_connects_and_keeps_the_messages(bridge_env):
    central, psk_port = psk_central(bridge_env)
    counter = bridge_env.counter(central.port, "gw1/sensors/#")
    spec = BridgeSpec([psk_port], extra=["bridge_identity gw1", "bridge_psk 00112233445566778899aabbccddeeff"],
                      restart_timeout="1 1")
    gw = bridge_env.gateway([spec]).start()
    publish_numbered(gw.port, "sensors/t", 1, 3)
    # Each attempt logs `connecting to` (log_type all); the failure line with its cause comes once a minute.
    assert wait_until(lambda: gw.count_log(r"connecting to 127\.0\.0\.1") >= 2
                      and gw.count_log(r"bridge central \(127\.0\.0\.1:\d+\): .*; retrying in") == 1, 15), \
        bridge_env.logs()
    assert gw.connected_count() == 0 and counter.distinct() == 0
    stats = subprocess.run([str(require_sluice_binary()), "queue", "stats", "-c", str(gw.conf_path), "central"],
                           capture_output=True, text=True, timeout=10)
    assert "depth=3" in stats.stdout, stats
