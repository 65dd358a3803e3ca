"""What Mosquitto does with its persistence on a full filesystem (RELIABILITY.md section 7).

Run as root: python3 scripts/mosquitto_full_disk.py free-then-restart|restart-while-full
An offline persistent session (p/#) and a retained message; the filesystem (a 16 MiB tmpfs) is
filled, 200 QoS 1 messages and a retained one are published (PUBACKs counted), then Mosquitto is
restarted (SIGTERM) after freeing the space, or while still full, and what survived is counted.
"""
import os, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Tests" / "IntegrationTests"))
import mqttraw as raw
work = tempfile.mkdtemp(prefix="mosqfull-")
d = f"{work}/data"; os.makedirs(d, exist_ok=True)
subprocess.run(["mount","-t","tmpfs","-o","size=16m","tmpfs",d], check=True)
try:
    port = 18833
    conf = f"{work}/m.conf"
    open(conf,"w").write(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location {d}/\nautosave_interval 1\nmax_queued_messages 0\nlog_dest stderr\n")
    def start():
        p = subprocess.Popen(["mosquitto","-c",conf], stderr=open(f"{work}/log","a"))
        time.sleep(0.5); return p
    m = start()
    k = raw.RawClient("127.0.0.1", port, timeout=5); k.connect("keeper", clean=False)
    k.send(raw.subscribe([("p/#",1)], packet_id=1)); k.expect(raw.SUBACK); k.send(raw.disconnect()); k.close()
    time.sleep(2)
    subprocess.run(["dd","if=/dev/zero",f"of={d}/filler","bs=64k"], capture_output=True)
    c = raw.RawClient("127.0.0.1", port, timeout=5); c.connect("pub")
    acked = 0
    for i in range(200):
        c.send(raw.publish("p/x", b"%d" % i + b" "*1000, qos=1, packet_id=i+1))
        if c.expect(raw.PUBACK).reason in (0, None): acked += 1
    c.send(raw.publish("p/retained", b"1000", qos=1, retain=True, packet_id=300))
    r = c.expect(raw.PUBACK).reason
    c.close()
    time.sleep(3)
    mode = sys.argv[1]
    if mode == "free-then-restart":
        os.unlink(f"{d}/filler")
    m.terminate(); m.wait(10)
    if mode == "restart-while-full":
        os.unlink(f"{d}/filler")
    m = start()
    k = raw.RawClient("127.0.0.1", port, timeout=5); sp = k.connect("keeper", clean=False).session_present
    got = set()
    try:
        while True:
            p = k.read_packet(2)
            if p.ptype == raw.PUBLISH:
                got.add(int(p.payload)); k.send(raw.ack(raw.PUBACK, p.packet_id))
    except TimeoutError: pass
    k.close()
    s = raw.RawClient("127.0.0.1", port, timeout=5); s.connect("reader"); s.send(raw.subscribe([("p/retained",1)], packet_id=1))
    pk = [s.read_packet(2) for _ in range(1)]
    try: pk.append(s.read_packet(2))
    except TimeoutError: pass
    retained = any(p.ptype == raw.PUBLISH for p in pk)
    print(f"{mode}: acked {acked}/200 + retained rc={r}; after restart session_present={sp} got {len(got)} retained={retained}")
    m.terminate(); m.wait(10)
finally:
    subprocess.run(["umount","-l",d])
