"""The operator's fleet view (issue 18): /metrics as Prometheus expects it (checked by Debian's
promtool), $SYS/broker/sluice/bridges/<name>/... read by a real subscriber and bridged home to a
real central, the shipped alert rules and Grafana dashboard against a running gateway's /metrics,
and the man page.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bridgeharness import (BridgeSpec, Client, SLUICE_BIN, assert_delivery, bridge_env,  # noqa: F401
                           free_port, publish_numbered, require_sluice_binary, uid, wait_until)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "sluice-alerts.yml"
RULES_TEST = ROOT / "contrib" / "prometheus" / "sluice-alerts.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "sluice-dashboard.json"
MAN_PAGE = ROOT / "packaging" / "sluice.1"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool missing: scripts/install-deps.sh installs Debian's prometheus")


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text: str) -> tuple[list[str], dict[str, str], dict[str, str], dict[str, float], list[str]]:
    """(family order from TYPE lines, family -> type, family -> help, 'name{labels}' -> value, raw values)."""
    order, types, helps, samples, raw = [], {}, {}, {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in types, f"family {name} appears twice"
            order.append(name)
            types[name] = kind
        elif line.startswith("# HELP "):
            _, _, name, help_text = line.split(" ", 3)
            assert name not in helps, f"HELP for {name} twice"
            helps[name] = help_text
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
            raw.append(match.group(3))
    return order, types, helps, samples, raw


def promtool_check_metrics(text: str) -> None:
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        f"promtool check metrics:\n{result.stdout}{result.stderr}"


def metric_names(promql: str) -> set[str]:
    return set(re.findall(r"\b((?:sluice|process)_[a-z0-9_]+)", promql))


def make_password_file(path: Path, user: str, password: str) -> None:
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True,
                   capture_output=True, timeout=10)


@needs_promtool
def test_metrics_follow_prometheus_conventions(bridge_env, tmp_path):
    env = bridge_env
    metrics_port = free_port()
    central = env.central().start()
    passwords = tmp_path / "passwd"
    make_password_file(passwords, "alice", "right")
    spec = BridgeSpec([central.port], extra=["queue_max_messages 5000", "queue_max_bytes 10MB", "queue_max_age 2h"])
    gw = env.gateway([spec], extra=[f"metrics_listener {metrics_port} 127.0.0.1", f"password_file {passwords}",
                                    "store_max_size 64MB"]).start()
    gw.wait_connected()
    started = time.time()
    first = scrape(metrics_port)
    promtool_check_metrics(first)
    order, types, helps, samples, raw = parse(first)
    assert set(order) == set(helps), "every family has HELP and TYPE"
    # Integers print as integers: no "0.0"; only process_cpu_seconds_total may carry a fraction.
    assert not [v for v in raw if re.fullmatch(r"-?\d+\.0+", v)], raw
    for name, kind in types.items():
        assert name.endswith("_total") == (kind == "counter"), f"{name} is a {kind}"
        if not helps[name].startswith("DEPRECATED"):
            assert not re.search(r"_total_|_bytes_received|_bytes_sent", name), f"unit after _total: {name}"

    version = subprocess.run([str(SLUICE_BIN), "version"], capture_output=True, text=True, timeout=10).stdout.split()[-1]
    assert samples[f'sluice_build_info{{version="{version}"}}'] == 1
    # The standard process collector's names and sane values.
    assert 1e6 < samples["process_resident_memory_bytes"] < 2e9
    assert started - 600 < samples["process_start_time_seconds"] <= started + 1
    assert 0 < samples["process_open_fds"] <= samples["process_max_fds"]
    assert samples["process_virtual_memory_bytes"] > samples["process_resident_memory_bytes"]
    # Store usage against store_max_size, and the filesystem under it.
    assert samples["sluice_store_max_bytes"] == 64 * 1024 * 1024
    assert 0 < samples["sluice_store_used_bytes"] <= samples["sluice_store_map_bytes"] <= samples["sluice_store_max_bytes"]
    assert 0 < samples["sluice_store_filesystem_avail_bytes"] < samples["sluice_store_filesystem_size_bytes"]
    # Queue bounds as gauges, in the units of the depth gauges.
    b = '{bridge="central"}'
    assert samples[f"sluice_bridge_queue_max_messages{b}"] == 5000
    assert samples[f"sluice_bridge_queue_max_bytes{b}"] == 10 * 1024 * 1024
    assert samples[f"sluice_bridge_queue_max_age_seconds{b}"] == 7200
    # The first connect is a connection, not a reconnect.
    assert samples[f"sluice_bridge_connections_total{b}"] == 1
    assert samples[f"sluice_bridge_reconnects_total{b}"] == 0
    assert started - 30 < samples[f"sluice_bridge_last_connect_timestamp_seconds{b}"] <= time.time() + 1
    assert samples[f"sluice_bridge_last_error_timestamp_seconds{b}"] == 0
    # Deprecated aliases of the renamed families say so and carry the same values.
    assert helps["sluice_bytes_received_total"].startswith("DEPRECATED: renamed sluice_received_bytes_total")
    assert samples["sluice_bytes_received_total"] == samples["sluice_received_bytes_total"]
    assert samples['sluice_publish_received_by_qos_total{qos="1"}'] == samples['sluice_publish_received_total{qos="1"}']

    # Authentication failures: a wrong password is counted; the right one is not.
    bad = subprocess.run(["mosquitto_pub", "-p", str(gw.port), "-t", "x", "-m", "1", "-u", "alice", "-P", "wrong"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0, bad
    subprocess.run(["mosquitto_pub", "-p", str(gw.port), "-t", "x", "-m", "1", "-u", "alice", "-P", "right"],
                   check=True, capture_output=True, timeout=10)
    publish_numbered(gw.port, "sensors/t", 1, 3)

    # The central goes away and comes back: one error time, one reconnect.
    central.stop()
    assert wait_until(lambda: parse(scrape(metrics_port))[3][f"sluice_bridge_connected{b}"] == 0, 15), env.logs()
    down = parse(scrape(metrics_port))[3]
    assert down[f"sluice_bridge_last_error_timestamp_seconds{b}"] >= started - 1
    central.start()
    assert wait_until(lambda: parse(scrape(metrics_port))[3][f"sluice_bridge_connected{b}"] == 1, 20), env.logs()
    second = scrape(metrics_port)
    promtool_check_metrics(second)
    order2, _, _, after, _ = parse(second)
    assert after[f"sluice_bridge_reconnects_total{b}"] == 1
    assert after[f"sluice_bridge_connections_total{b}"] == 2
    assert after[f"sluice_bridge_last_connect_timestamp_seconds{b}"] >= down[f"sluice_bridge_last_error_timestamp_seconds{b}"]
    assert after['sluice_auth_failures_total{reason="bad_username_or_password"}'] == 1
    assert after['sluice_auth_failures_total{reason="not_authorized"}'] == 0
    assert after['sluice_publish_received_total{qos="1"}'] >= 3
    assert after["process_cpu_seconds_total"] >= samples["process_cpu_seconds_total"]
    assert after["process_cpu_seconds_total"] > 0
    # Same families in the same order from one scrape to the next.
    assert order2 == order


def sys_values(client: Client, prefix: str) -> dict[str, str]:
    """The latest payload per $SYS topic below prefix."""
    latest = {}
    for topic, payload, _, _ in client.messages(prefix):
        latest[topic[len(prefix):]] = payload.decode()
    return latest


def test_sys_topics_show_each_bridge_and_reach_the_central_when_bridged_home(bridge_env):
    """A subscriber on the gateway reads state, depth, bytes, oldest age and rates; a `$SYS` rule
    bridges them home, so the central sees how far behind this site was."""
    env = bridge_env
    central_port = free_port()
    spec = BridgeSpec([central_port], topics=['sensors/# out 1 "" gw1/',
                                              '# out 0 $SYS/broker/sluice/bridges/ sites/gw1/bridges/'])
    gw = env.gateway([spec], extra=["sys_interval 1"]).start()
    watcher = env.client(gw.port)
    watcher.subscribe("$SYS/broker/sluice/bridges/#", qos=0)
    prefix = "$SYS/broker/sluice/bridges/central/"
    publish_numbered(gw.port, "sensors/t", 1, 50)
    # Outage: the link is down, the 50 messages (and the $SYS copies bound for home) wait, and age.
    assert wait_until(lambda: sys_values(watcher, prefix).get("state") == "disconnected"
                      and int(sys_values(watcher, prefix).get("queue/depth", 0)) >= 50
                      and int(sys_values(watcher, prefix).get("queue/oldest_age", 0)) >= 2, 20), \
        (sys_values(watcher, prefix), env.logs())
    during = sys_values(watcher, prefix)
    assert int(during["queue/bytes"]) > 50 * len("gw1/sensors/t")
    assert during["messages/sent"] == "0" and during["rate/sent"] == "0.00"
    assert during["dead_letters"] == "0"
    # The central comes back: the queue drains, every message arrives once.
    central = env.central(port=central_port).start()
    home = env.client(central.port)
    home.subscribe("sites/gw1/bridges/#", qos=0)
    counter = env.counter(central.port, "gw1/sensors/#")
    gw.wait_connected()
    # Drained down to the last round's $SYS copies: queued after each sample, acknowledged at once, their removal
    # rides the next round's commit, so a sample can still count up to one round of them (9 topics).
    assert wait_until(lambda: sys_values(watcher, prefix).get("state") == "connected"
                      and int(sys_values(watcher, prefix).get("queue/depth", 99)) <= 9, 30), \
        (sys_values(watcher, prefix), env.logs())
    assert int(sys_values(watcher, prefix)["messages/sent"]) >= 50
    rates = [float(p) for t, p, _, _ in watcher.messages(prefix + "rate/sent")]
    assert max(rates) > 0, rates
    assert_delivery(counter, list(range(1, 51)), max_duplicates=0, context=env.logs())
    # Bridged home: the central holds the gateway's view of its own link.
    assert wait_until(lambda: sys_values(home, "sites/gw1/bridges/central/").get("state") == "connected", 15), \
        (home.messages(), env.logs())
    assert "queue/depth" in sys_values(home, "sites/gw1/bridges/central/")


@needs_promtool
def test_shipped_rules_and_dashboard_name_metrics_a_running_gateway_exports(bridge_env, tmp_path):
    # The rules load, and their own unit tests (each alert fires where meant) pass.
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(["promtool", "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent,
                          capture_output=True, text=True, timeout=60)
    assert test.returncode == 0, test.stdout + test.stderr
    rules = RULES.read_text()
    alerts = re.findall(r"^\s+- alert: (\w+)$", rules, re.M)
    for needed in ("SluiceBridgeLinkDown", "SluiceBridgeQueueNearlyFull", "SluiceBridgeMessagesDelayed",
                   "SluiceBridgeDeadLetters", "SluiceStoreNotWritable", "SluiceDiskFreeLow"):
        assert needed in alerts, f"no {needed} alert"
    rule_exprs = re.findall(r"^\s+expr: (.+)$", rules, re.M)
    assert len(rule_exprs) == len(alerts)

    # Every dashboard query is PromQL that promtool parses (Grafana's variables filled in).
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 15
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    filled = [q.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$bridge", ".*") for q in queries]
    as_rules = tmp_path / "dashboard-queries.yml"
    as_rules.write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: dashboard:query_{n}\n        expr: {json.dumps(q)}\n" for n, q in enumerate(filled)))
    parsed = subprocess.run(["promtool", "check", "rules", str(as_rules)], capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr

    # A gateway with a bridge, a store and bounded queues exports every name they use.
    metrics_port = free_port()
    central = bridge_env.central().start()
    spec = BridgeSpec([central.port], extra=["queue_max_age 1d"])
    gw = bridge_env.gateway([spec], extra=[f"metrics_listener {metrics_port} 127.0.0.1"]).start()
    gw.wait_connected()
    exported = set(parse(scrape(metrics_port))[1])
    used = set().union(*(metric_names(q) for q in rule_exprs + queries))
    template_queries = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used |= set().union(*(metric_names(q) for q in template_queries))
    assert len(used) >= 20, used
    assert not used - exported, f"used by the rules or dashboard but not exported: {sorted(used - exported)}"
    assert central.alive() and gw.alive()


def test_man_page_renders_cleanly_and_names_every_subcommand():
    if shutil.which("man") is None or shutil.which("groff") is None:
        pytest.skip("man or groff missing: scripts/install-deps.sh installs man-db and groff-base")
    rendered = subprocess.run(["man", "--warnings", "-l", str(MAN_PAGE)], capture_output=True, text=True, timeout=30,
                              env={"MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "PATH": "/usr/bin:/bin",
                                   "LANG": "C.UTF-8"})
    assert rendered.returncode == 0, rendered.stderr
    assert not rendered.stderr.strip(), f"man warns:\n{rendered.stderr}"
    text = re.sub(r".\x08", "", rendered.stdout)
    helptext = subprocess.run([str(require_sluice_binary()), "--help"], capture_output=True, text=True,
                              timeout=10).stdout
    block = helptext.split("SUBCOMMANDS:", 1)[1]
    subcommands = re.findall(r"^  ([a-z][a-z0-9-]*)\s{2,}\S", block, re.M)
    assert {"run", "check", "queue", "passwd", "store"} <= set(subcommands), subcommands
    for sub in subcommands:
        # `\s+`: groff pads justified lines from alternating sides, so "sluice  status" happens.
        assert re.search(rf"^\s+sluice\s+{sub}\b", text, re.M), f"subcommand {sub} has no entry in the man page"
    # Every key gateway.conf knows is named (how each is answered: docs/mosquitto-keys.md).
    listing = subprocess.run([str(SLUICE_BIN), "check", "--list-keys"], capture_output=True, text=True, timeout=10).stdout
    keys = re.findall(r"^\| `([^`]+)` \|", listing, re.M)
    assert len(keys) > 100, listing[:500]
    words = {w.rstrip(".") for w in re.findall(r"[\w.*]+", text)}
    assert not [k for k in keys if k not in words], f"keys the man page does not name: {[k for k in keys if k not in words]}"
    grouped = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-man-keys.py"), "--check", str(SLUICE_BIN)],
                             capture_output=True, text=True, timeout=30)
    assert grouped.returncode == 0, grouped.stdout + grouped.stderr
    for subject in ("/metrics", "/healthz", "LoRaWAN", "mosquitto-keys", "store_max_size", "queue_max_messages",
                    "$SYS/broker/sluice/bridges", "sluice-alerts.yml", "sluice-dashboard.json"):
        assert subject in text, f"the man page does not mention {subject}"
