"""`sluice status` and the status page at `/` on the metrics listener (issue 18).

A real central mosquitto goes away while 20,000 messages are published, then comes back: the CLI
and the page (rendered by headless Chromium, JavaScript off is its natural state: the page has
none) must show the link down, the depth and the age during the outage, and a drain rate and a time
to drain after the central returns. Screenshots are kept in $SLUICE_TEST_ARTIFACTS (default
<tmp>/sluice-status-artifacts) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridgeharness import (BridgeSpec, bridge_env, assert_delivery, free_port,  # noqa: F401
                           mosq_pub_lines, require_sluice_binary, wait_until)

WINDOW = 100
ARTIFACTS = Path(os.environ.get("SLUICE_TEST_ARTIFACTS",
                                Path(tempfile.gettempdir()) / "sluice-status-artifacts"))


def status_cli(gw, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([str(require_sluice_binary()), "status", "-c", str(gw.conf_path), *args],
                          capture_output=True, text=True, timeout=timeout)


def status_json(gw) -> dict:
    r = status_cli(gw, "--json")
    assert r.returncode == 0, f"sluice status --json failed ({r.returncode}): {r.stderr}"
    return json.loads(r.stdout)


def http_get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        print("SKIP reason: chromium is not installed (scripts/install-deps.sh installs it)")
        pytest.skip("chromium is not installed (scripts/install-deps.sh installs it)")
    return path


def render(url: str, shot: Path, profile: Path) -> str:
    """The page as headless Chromium lays it out: a screenshot in `shot`, the DOM returned."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([chromium(), "--headless", "--disable-gpu", "--no-sandbox",
                        f"--user-data-dir={profile}", "--window-size=1100,1100",
                        f"--screenshot={shot}", "--dump-dom", url],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"chromium failed ({r.returncode}): {r.stderr[-2000:]}"
    assert shot.is_file() and shot.stat().st_size > 1000, f"no screenshot at {shot}"
    print(f"screenshot: {shot}")
    return r.stdout


def section(dom: str, bridge: str) -> str:
    m = re.search(r'<section id="bridge-\d+" data-bridge="%s".*?</section>' % re.escape(bridge), dom, re.S)
    assert m, f"no section for bridge {bridge} in the page:\n{dom[:3000]}"
    return m.group(0)


def polyline(dom: str, graph_id: str) -> str:
    m = re.search(r'<svg id="%s"[^>]*>(.*?)</svg>' % re.escape(graph_id), dom, re.S)
    assert m, f"no graph {graph_id} in the page"
    points = re.search(r'points="([^"]+)"', m.group(1))
    assert points, f"graph {graph_id} has no line yet: {m.group(1)}"
    return points.group(1)


def test_status_through_an_outage_and_the_drain(bridge_env, tmp_path):
    env = bridge_env
    n = 20_000
    metrics = free_port()
    central = env.central().start()
    counter = env.counter(central.port, "gw1/sensors/#")
    # Paced, so the drain lasts long enough to be looked at (about 20 s at 1,000 messages a second).
    spec = BridgeSpec([central.port], extra=["bridge_max_rate 1000"], max_inflight=WINDOW)
    gw = env.gateway([spec], extra=[f"metrics_listener {metrics} 127.0.0.1"]).start()
    gw.wait_connected()
    assert status_json(gw)["bridges"][0]["state"] == "connected"

    central.stop()
    assert wait_until(lambda: status_json(gw)["bridges"][0]["state"] == "disconnected", 15, 0.3), env.logs()
    mosq_pub_lines(gw.port, "sensors/outage", [str(i) for i in range(1, n + 1)], qos=1, timeout=180)
    # Two points of history at least, so the depth graph has a line to compare later.
    assert wait_until(lambda: len(status_json(gw)["history"]) >= 2, 30, 0.5), env.logs()
    time.sleep(1.5)  # the oldest message is visibly old

    # The CLI during the outage: link down, depth, age; --json parses and says the same.
    r = status_cli(gw)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    print(out)
    assert "bridge central: link DOWN since" in out, out
    assert "20,000 messages" in out, out
    age = re.search(r"oldest (\d+) s", out) or re.search(r"oldest (\d+) min", out)
    assert age and int(age.group(1)) >= 1, out
    assert "connection" in out.split("error", 1)[-1], f"last error missing:\n{out}"
    snap = status_json(gw)
    bridge = snap["bridges"][0]
    assert snap["source"] == "gateway" and snap["version"] and snap["uptime_seconds"] > 0
    assert bridge["state"] == "disconnected" and bridge["depth"] == n and bridge["bytes"] > 0
    assert bridge["oldest_age_seconds"] >= 1
    assert bridge["send_rate"] == 0 and bridge.get("drain_seconds") is None
    assert bridge["queue_rate"] > 0, bridge
    assert any(b["key"] == "queue_max_messages" and b["percent"] == pytest.approx(2.0) for b in bridge["bounds"])

    # The page during the outage, in a real browser.
    url = f"http://127.0.0.1:{metrics}/"
    during = render(url, ARTIFACTS / "status-outage.png", tmp_path / "chromium")
    part = section(during, "central")
    assert 'data-depth="20000"' in part and "20,000 messages" in part, part
    assert "link DOWN" in part
    line_during = polyline(during, "bridge-0-depth")

    # The central returns: the drain shows a rate and a time to drain.
    central.start()
    def draining():
        b = status_json(gw)["bridges"][0]
        return b["state"] == "connected" and 0 < b["depth"] < n and (b.get("drain_seconds") or 0) > 0
    assert wait_until(draining, 60, 0.3), f"no drain seen\n{status_cli(gw).stdout}\n{env.logs()}"
    r = status_cli(gw)
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    drain = re.search(r"drain    ([\d,.]+)/s · empty in (\d+ (?:s|min))", r.stdout)
    assert drain, f"no drain rate and time to drain:\n{r.stdout}"
    assert float(drain.group(1).replace(",", "")) > 0
    assert "bridge central: link up since" in r.stdout
    mid = render(url, ARTIFACTS / "status-draining.png", tmp_path / "chromium")
    assert "empty in" in section(mid, "central")

    assert counter.wait_distinct(n, 120), f"drain incomplete\n{env.logs()}"
    counter.settle(1.0)
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=WINDOW, context=env.logs())
    # After the drain: empty, and the graphs' newest point says so.
    assert wait_until(lambda: status_json(gw)["history"][-1]["depths"][0] == 0, 30, 0.5), env.logs()
    r = status_cli(gw)
    assert r.returncode == 0 and "0 messages" in r.stdout and "queue empty" in r.stdout, r.stdout
    after = render(url, ARTIFACTS / "status-drained.png", tmp_path / "chromium")
    part = section(after, "central")
    assert 'data-depth="0"' in part and "queue empty" in part and "link up" in part, part
    line_after = polyline(after, "bridge-0-depth")
    assert line_after != line_during, "the depth graph did not change through the drain"
    assert line_after.split()[-1].endswith(",58.0"), f"last depth point is not zero: {line_after}"
    drain_caption = re.search(r'id="bridge-0-drain".*?<figcaption>([^<]*)</figcaption>', after, re.S)
    assert drain_caption and not drain_caption.group(1).endswith("max 0/s"), drain_caption
    print(f"artifacts in {ARTIFACTS}")


def test_status_page_json_watch_and_store_fallback(bridge_env):
    env = bridge_env
    metrics = free_port()
    dead_central = free_port()  # nothing listens: the link stays down
    spec = BridgeSpec([dead_central], extra=["queue_max_messages 1000"])
    gw = env.gateway([spec], extra=[f"metrics_listener {metrics} 127.0.0.1"]).start()
    mosq_pub_lines(gw.port, "sensors/x", [str(i) for i in range(50)], qos=1)
    assert wait_until(lambda: status_json(gw)["bridges"][0]["depth"] == 50, 10, 0.2)

    # The page and the JSON over plain HTTP.
    code, ctype, html = http_get(metrics, "/")
    assert code == 200 and ctype.startswith("text/html"), (code, ctype)
    print(f"status page: {len(html.encode())} bytes")
    assert "<script" not in html.lower() and "src=" not in html and len(html.encode()) < 10_000
    assert 'data-depth="50"' in html and "queue_max_messages 5.0 %" in html
    code, ctype, body = http_get(metrics, "/status.json")
    assert code == 200 and ctype == "application/json" and json.loads(body)["bridges"][0]["depth"] == 50
    code, _, body = http_get(metrics, "/nope")
    assert code == 404 and "/status.json" in body

    # --watch: a bounded number of refreshes; with --json, one document per line.
    r = status_cli(gw, "--watch", "--count", "3", "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("bridge central: link DOWN") == 3, r.stdout
    r = status_cli(gw, "--watch", "--count", "2", "--interval", "0.2", "--json")
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert r.returncode == 0 and len(lines) == 2, r.stdout
    assert all(json.loads(line)["bridges"][0]["depth"] == 50 for line in lines)

    # `sluice queue pause` shows, from the gateway and from the store.
    r = subprocess.run([str(require_sluice_binary()), "queue", "pause", "central", "-c", str(gw.conf_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: status_json(gw)["bridges"][0]["paused"], 10, 0.3)
    assert "link DOWN, PAUSED (sluice queue resume)" in status_cli(gw).stdout

    # The gateway down: the store, read-only, and it says so (exit 3).
    gw.stop()
    r = status_cli(gw)
    print(r.stdout)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.startswith(f"gateway not answering (127.0.0.1:{metrics}: connection refused)"), r.stdout
    assert "link state unknown (gateway not answering), PAUSED" in r.stdout, r.stdout
    assert "50 messages" in r.stdout and "queue_max_messages 5.0 %" in r.stdout
    r = status_cli(gw, "--json")
    assert r.returncode == 3, r.stderr
    snap = json.loads(r.stdout)
    assert snap["source"] == "store" and "connection refused" in snap["gateway_unreachable"]
    assert snap["bridges"][0]["depth"] == 50 and snap["bridges"][0]["state"] == "unknown"
    assert "send_rate" not in snap["bridges"][0] and "clients" not in snap

    # Without a metrics_listener there is nothing to ask: the store, and why.
    conf = gw.conf_path.read_text().replace(f"metrics_listener {metrics} 127.0.0.1\n", "")
    bare = gw.workdir / "bare.conf"
    bare.write_text(conf)
    r = subprocess.run([str(require_sluice_binary()), "status", "-c", str(bare)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and f"no metrics_listener in {bare}" in r.stdout, r.stdout + r.stderr


def test_status_errors_are_one_line_and_non_zero(tmp_path):
    sluice = str(require_sluice_binary())

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sluice, "status", *args], capture_output=True, text=True, timeout=30)

    r = run("-c", str(tmp_path / "missing.conf"))
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.startswith("sluice: ") and r.stderr.count("\n") == 1, r.stderr
    # A gateway that never ran: nothing answers and there is no store.
    conf = tmp_path / "gw.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\npersistence true\npersistence_location {tmp_path}/data/\n"
                    f"metrics_listener {free_port()} 127.0.0.1\n")
    r = run("-c", str(conf))
    assert r.returncode == 1 and r.stdout == "", r
    assert "connection refused" in r.stderr and "no store at" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    for bad in (["--watch", "--count", "0"], ["--count", "2"], ["--watch", "--interval", "0"],
                ["--interval", "abc"]):
        r = run("-c", str(conf), *bad)
        assert r.returncode != 0 and r.stdout == "", (bad, r)
