"""Soak: a bounded-time run with mixed load; the gateway's RSS must not keep growing. Issue 6,
part 5.

SOAK_SECONDS sets the length (default 60, the CI version; scripts/soak.sh runs 600). Load, all
at once: QoS 1 numbered telemetry bridged to a central Mosquitto (every one must arrive), local
pub/sub at QoS 0/1/2 with a reading subscriber, retained-message churn over 50 topics,
connect/subscribe/disconnect churn (clean sessions, and persistent ones from a pool of 8 ids), and one subscriber that never reads. RSS (VmRSS) is sampled
every second into a CSV (SOAK_CSV, else the test's tmp folder), split into RssAnon (heap) and
RssFile (mostly the LMDB store's mapped pages, which follow the store file's size and which the
kernel can reclaim). After a warm-up (the first 25% of the run), the last quarter's heap peak
may exceed the warm-up's by at most GROWTH_BOUND_MIB (4 MiB): a leak of one small allocation
per message or connection would break it.
"""

from __future__ import annotations

import csv
import os
import socket
import threading
import time
from pathlib import Path

import mqttraw
from bridgeharness import Client, assert_delivery, bridge_env, start_link, uid  # noqa: F401

GROWTH_BOUND_MIB = 4.0


def _rss_kib(pid: int) -> tuple[int, int, int]:
    """(VmRSS, RssAnon, RssFile) in KiB. RssFile is mostly the LMDB store's mapped pages, which
    grow with the store's file and which the kernel can reclaim; a leak shows in RssAnon."""
    out = {"VmRSS:": 0, "RssAnon:": 0, "RssFile:": 0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0] + ":"
            if key in out:
                out[key] = int(line.split()[1])
    return out["VmRSS:"], out["RssAnon:"], out["RssFile:"]


def test_soak_rss_stays_flat(bridge_env, tmp_path):
    env = bridge_env
    seconds = float(os.environ.get("SOAK_SECONDS", "60"))
    print(f"soak for {seconds:.0f}s (SOAK_SECONDS)")
    central, counter, gw = start_link(env, max_inflight=50,
                                      extra=["max_queued_messages 200", "max_inflight_messages 20"])
    pid = gw.proc.pid
    stop = threading.Event()
    errors: list[str] = []
    counts = {"bridged": 0, "local": 0, "retained": 0, "churn": 0}

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # reported at the end
                errors.append(f"{fn.__name__}: {e!r}")
        return threading.Thread(target=run, daemon=True)

    def bridged():
        c = Client(gw.port, uid("soakpub"), max_inflight=20).connect()
        n = 0
        while not stop.is_set():
            n += 1
            c.publish("sensors/soak", str(n), 1, timeout=30)
            counts["bridged"] = n
            time.sleep(0.005)
        c.close()

    def local():
        sub = Client(gw.port, uid("soaksub")).connect()
        sub.subscribe("local/#", 2)
        pub = Client(gw.port, uid("soaklocal")).connect()
        n = 0
        while not stop.is_set():
            n += 1
            pub.publish(f"local/q{n % 3}", b"p" * (n % 512), n % 3, timeout=30)
            if n % 1000 == 0:
                sub.clear()
            counts["local"] = n
            time.sleep(0.002)
        sub.close()
        pub.close()

    def retained():
        c = Client(gw.port, uid("soakret")).connect()
        n = 0
        while not stop.is_set():
            n += 1
            c.publish(f"ret/{n % 50}", f"v{n}".encode() if n % 7 else b"", 1, retain=True,
                      timeout=30)
            counts["retained"] = n
            time.sleep(0.02)
        c.close()

    def churn():
        n = 0
        tag = uid("churnp")
        while not stop.is_set():
            n += 1
            with mqttraw.RawClient("127.0.0.1", gw.port) as r:
                # Persistent sessions come from a pool of 8 ids, so the state they keep is bounded.
                persistent = n % 2 == 1
                r.connect(f"{tag}-{n % 8}" if persistent else uid("churn"), clean=not persistent)
                r.send(mqttraw.subscribe([(f"local/q{n % 3}", n % 3), ("ret/#", 0)]))
                # A persistent session gets its queued messages first; skip them (bounded).
                for _ in range(2000):
                    if r.read_packet(5).ptype == mqttraw.SUBACK:
                        break
                else:
                    raise AssertionError("no SUBACK among 2000 packets")
                if n % 2:
                    r.send(mqttraw.disconnect())
            counts["churn"] = n
            time.sleep(0.1)

    # A subscriber that never reads (its memory is bounded by the per-client limits).
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", gw.port))
    stalled.sendall(mqttraw.connect(uid("stalled"), keepalive=0) +
                    mqttraw.subscribe([("local/#", 1), ("sensors/#", 0)]))

    # SOAK_LOADS picks some of the loads (to find which one grows memory); default: all.
    chosen = set(os.environ.get("SOAK_LOADS", "bridged,local,retained,churn").split(","))
    threads = [guard(f) for f in (bridged, local, retained, churn) if f.__name__ in chosen]
    for t in threads:
        t.start()
    csv_path = Path(os.environ.get("SOAK_CSV", str(tmp_path / "soak-rss.csv")))
    samples: list[tuple[float, tuple[int, int, int]]] = []
    t0 = time.monotonic()
    try:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["seconds", "rss_kib", "anon_kib", "file_kib", "bridged", "local", "retained",
                        "churn"])
            while time.monotonic() - t0 < seconds and not errors and gw.alive():
                time.sleep(1.0)
                s = (time.monotonic() - t0, _rss_kib(pid))
                samples.append(s)
                w.writerow([f"{s[0]:.1f}", *s[1], counts["bridged"], counts["local"],
                            counts["retained"], counts["churn"]])
                f.flush()
    finally:
        stop.set()
        for t in threads:
            t.join(40)
        stalled.close()
    assert gw.alive(), f"gateway died\n{gw.log_tail()}"
    assert not errors, f"load errors: {errors}\n{env.logs()}"
    n = counts["bridged"]
    arrived = counter.wait_distinct(n, 60)
    counter.settle(1.0)
    assert_delivery(counter, list(range(1, n + 1)), max_duplicates=0,
                    context=f"complete {arrived}\n{env.logs()}")
    k = max(1, len(samples) // 4)

    def peak(part, i):
        return max(r[i] for _, r in part) / 1024

    warm_anon, end_anon = peak(samples[:k], 1), peak(samples[-k:], 1)
    warm_rss, end_rss = peak(samples[:k], 0), peak(samples[-k:], 0)
    report = (f"soak {seconds:.0f}s: {counts}; heap (RssAnon) warm-up peak {warm_anon:.1f} MiB, "
              f"last-quarter peak {end_anon:.1f} MiB, growth {end_anon - warm_anon:+.1f} MiB "
              f"(bound {GROWTH_BOUND_MIB} MiB); VmRSS {warm_rss:.1f} -> {end_rss:.1f} MiB "
              f"(includes the LMDB map's file pages {peak(samples[-k:], 2):.1f} MiB); CSV {csv_path}")
    print(report)
    assert end_anon - warm_anon <= GROWTH_BOUND_MIB, "heap kept growing: " + report
