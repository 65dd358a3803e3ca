#!/usr/bin/env python3
"""RSS per idle subscribed connection (issue 17's figure): starts the broker on a free loopback port,
reads its VmRSS 2 s after start, opens N raw-socket clients that each CONNECT (MQTT 3.1.1, keepalive 0)
and SUBSCRIBE perconn/I/+ at QoS 1, reads VmRSS 2 s later, and prints (that - idle) / N.

usage: conn-rss.py sluice|mosquitto BINARY [N] [--noop-madvise]
  --noop-madvise  preload a madvise(2) that does nothing (compiled with cc): WorkingSet releases nothing
  env WRAP="valgrind --tool=massif ..." runs the broker under a wrapper; HOLD=S keeps the clients S s."""
import os, socket, subprocess, sys, tempfile, time, struct, resource, selectors
kind, binary = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 5000
noop = "--noop-madvise" in sys.argv
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port = free_port()
tmp = tempfile.mkdtemp(prefix="perconn")
conf = os.path.join(tmp, "b.conf")
with open(conf, "w") as f:
    if kind == "sluice":
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {tmp}/\nlog_type error\nmax_connections -1\n")
        cmd = [binary, "run", "-c", conf]
    else:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {tmp}/\nlog_type error\nmax_connections -1\n")
        cmd = [binary, "-c", conf]
env = dict(os.environ)
if noop:
    with open(os.path.join(tmp, "noop.c"), "w") as f:
        f.write("#include <sys/mman.h>\nint madvise(void *a, size_t l, int d) { (void)a; (void)l; (void)d; return 0; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(tmp, "noop.so"), os.path.join(tmp, "noop.c")], check=True)
    env["LD_PRELOAD"] = os.path.join(tmp, "noop.so")
wrap = os.environ.get("WRAP", "")
if wrap: cmd = wrap.split() + cmd
p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if not os.environ.get("SHOWERR") else None)
def rss(kind_="VmRSS"):
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith(kind_ + ":"): return int(line.split()[1])
def rollup():
    d = {}
    with open(f"/proc/{p.pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB": d[parts[0].rstrip(":")] = int(parts[1])
    return d
deadline = time.time() + float(os.environ.get("START_WAIT", "30"))
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port)); s.close(); break
    except OSError:
        if time.time() > deadline: print("broker did not start"); p.kill(); sys.exit(1)
        time.sleep(0.05)
time.sleep(float(os.environ.get("IDLE_WAIT", "2")))
idle = rss(); ro = rollup()
print(f"{kind} idle VmRSS {idle} kB  RssAnon {rss('RssAnon')} kB RssFile {rss('RssFile')} kB threads {len(os.listdir(f'/proc/{p.pid}/task'))}")
def enc_len(x):
    out = b""
    while True:
        d = x % 128; x //= 128
        out += bytes([d | (0x80 if x else 0)])
        if not x: return out
def connect_pkt(cid):
    cid = cid.encode()
    vh = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack(">H", len(cid)) + cid
    return b"\x10" + enc_len(len(vh)) + vh
def sub_pkt(i):
    t = f"perconn/{i}/+".encode()
    body = struct.pack(">H", 1) + struct.pack(">H", len(t)) + t + b"\x01"
    return b"\x82" + enc_len(len(body)) + body
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(connect_pkt(f"perconn-{i}") + sub_pkt(i))
    socks.append(s)
    if i % 200 == 199:
        # drain CONNACK+SUBACK replies of the batch (9 bytes)
        for t in socks[-200:]:
            got = b""
            t.settimeout(10)
            while len(got) < 9: got += t.recv(64)
for t in socks[(n // 200) * 200:]:
    got = b""; t.settimeout(10)
    while len(got) < 9: got += t.recv(64)
time.sleep(2)
full = rss()
print(f"{kind} {n} conns VmRSS {full} kB RssAnon {rss('RssAnon')} kB; per connection {(full - idle) * 1024 / n / 1024:.2f} KB (KiB)")
if os.environ.get("HOLD"): time.sleep(float(os.environ["HOLD"]))
for s in socks: s.close()
p.terminate()
try: p.wait(20)
except subprocess.TimeoutExpired: p.kill()
