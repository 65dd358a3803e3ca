#!/usr/bin/env python3
"""Power-cut proof (issue 13): the gateway runs in a VM whose store disk keeps only what the guest
flushed; power is cut at random moments; every message the gateway PUBACKed must reach the
central, in order, and the gateway must boot from its store every time.

Why a VM: `kill -9` of the gateway keeps the kernel's page cache, so written-but-unflushed data
survives it and the fsync ordering is never tested. Here the disk is an NBD export served by
nbdkit's file plugin under its cache filter in `cache=writeback` mode: a guest write lands in the
filter's cache (a deleted temporary file of the nbdkit process) and reaches the disk image only
when the guest sends a flush. A power cut is SIGKILL of qemu and of nbdkit together: the guest's
RAM and page cache and every write not yet flushed by the guest are gone; the image keeps exactly
what was flushed (plus whatever part of an unacknowledged flush had been written back).

Host side, loopback only: qemu's user-mode network forwards 127.0.0.1:<port> to the gateway's
listener in the guest, and the guest's bridge reaches the central broker (Debian mosquitto on
127.0.0.1, started here) through a guestfwd to 10.0.2.100:1884 that runs `socat` per connection.
`restrict=on`: the guest can reach nothing else.

Checks, after the last cycle and one more boot with the central up:
* every PUBACKed number arrived at the central (0 lost);
* first arrivals in publishing order; duplicates at most the in-flight window per interruption;
* every boot mounted the store and started the gateway (no damaged store).

Usage: powercut.py CYCLES [--seed S] [--mutate nosync|nobarrier] [--workdir DIR] [--keep]
Exit status 0 when every check holds, 1 when one fails, 2 when the environment cannot run it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "Tests" / "IntegrationTests"))
sys.path.insert(0, str(HERE))

# The central broker, its counting subscriber and the numbered publisher are the ones the
# kill -9 crash loop uses.
import diskcheck  # noqa: E402
from bridgeharness import Central, Counter, free_port, wait_until  # noqa: E402
from test_crash_loop import NumberedPublisher, _first_arrivals  # noqa: E402

WINDOW = 50                # bridge_max_inflight in the guest: the bound on resends per interruption
DISK_SIZE = 512 << 20      # sparse; the store is capped at 128 MB below
GUEST_CENTRAL = "10.0.2.100"
GUEST_CENTRAL_PORT = 1884
TOPIC = "sensors/powercut"


def log(msg: str) -> None:
    print(msg, flush=True)


def choose_accel(base: Path, work: Path) -> tuple[str, str]:
    """KVM when a Debian kernel actually boots under it, else TCG; returns (accel, why).

    /dev/kvm alone is not enough: on a nested host whose KVM is kvm-pvm (/sys/module/kvm_pvm)
    `info kvm` says enabled, yet only PVM-enabled guest kernels run; a stock kernel hangs right
    after its real-mode setup. So boot the kernel for a few seconds and look for its banner."""
    forced = os.environ.get("SLUICE_POWERCUT_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, "SLUICE_POWERCUT_ACCEL"
    if not (os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)):
        return "tcg", "no usable /dev/kvm"
    if os.path.isdir("/sys/module/kvm_pvm"):
        return "tcg", ("/dev/kvm is kvm-pvm here, which runs only PVM-enabled guest kernels; "
                       "a Debian kernel hangs under it")
    console = work / "kvm-probe.log"
    probe = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-nodefaults", "-no-user-config",
         "-display", "none", "-no-reboot", "-kernel", str(base / "vmlinuz"),
         "-append", "console=ttyS0 panic=-1", "-serial", f"file:{console}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        booted = wait_until(lambda: console.exists() and "Linux version" in
                            console.read_text(errors="replace"), 15, 0.1)
    finally:
        if probe.poll() is None:
            probe.kill()
        probe.wait(10)
    if booted:
        return "kvm", "a Debian kernel boots under KVM"
    return "tcg", "/dev/kvm is present but a Debian kernel did not boot under it within 15 s"


# --------------------------------------------------------------------------- image

def build_base(env: dict) -> Path:
    r = subprocess.run([str(HERE / "build-image.sh")], capture_output=True, text=True, env=env,
                       timeout=600)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        raise SystemExit(2)
    return Path(r.stdout.strip().splitlines()[-1])


def shared_libraries(binary: Path) -> list[Path]:
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    libs = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target == "not":
                raise SystemExit(f"powercut: {binary} needs a library ldd cannot find: {line.strip()}")
            if target.startswith("/"):
                libs.append(Path(target))
        elif parts and parts[0].startswith("/"):
            libs.append(Path(parts[0]))  # the dynamic loader
    return libs


GATEWAY_CONF = f"""\
listener 1883
allow_anonymous true
persistence true
persistence_location /store/
store_max_size 128MB
log_type error
log_type warning
log_type notice
log_type information
connection central
address {GUEST_CENTRAL}:{GUEST_CENTRAL_PORT}
topic sensors/# out 1 "" gw1/
restart_timeout 1 1
keepalive_interval 5
bridge_max_inflight {WINDOW}
remote_clientid gw-powercut
cleansession false
"""


def pack_initrd(base: Path, sluice: Path, work: Path, mutate: str | None) -> Path:
    """base.cpio.gz (kernel modules, busybox, init) + an uncompressed cpio with this build's
    sluice, the exact shared libraries it links on this host and the gateway config: the
    kernel unpacks concatenated archives in order."""
    stage = work / "app-root"
    if stage.exists():
        shutil.rmtree(stage)
    libdir = stage / "opt" / "sluice" / "lib"
    libdir.mkdir(parents=True)
    shutil.copy2(sluice, stage / "opt" / "sluice" / "sluice")
    for lib in shared_libraries(sluice):
        if lib.name.startswith("ld-linux"):
            dest = stage / str(lib).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib.resolve(), dest)
        else:
            shutil.copy2(lib.resolve(), libdir / lib.name)
    # Debug info only: the code is the build's own. Halves what the guest must unpack and keep.
    for f in [stage / "opt" / "sluice" / "sluice", *libdir.iterdir()]:
        subprocess.run(["strip", "--strip-debug", str(f)], check=True)
    (stage / "etc" / "sluice").mkdir(parents=True)
    (stage / "etc" / "sluice" / "gateway.conf").write_text(GATEWAY_CONF)
    if mutate == "nosync":
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(stage / "opt" / "sluice" / "nosync.so"),
                        str(HERE / "nosync.c")], check=True)
    app = work / "app.cpio"
    files = subprocess.run(["find", ".", "-mindepth", "1"], cwd=stage, capture_output=True,
                           text=True, check=True).stdout
    with open(app, "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=stage, input=files.encode(),
                       stdout=out, check=True)
    initrd = work / "initrd.img"
    with open(initrd, "wb") as out:
        with open(base / "base.cpio.gz", "rb") as f:
            shutil.copyfileobj(f, out)
        # The kernel skips zero padding between archives but does not find an uncompressed one
        # right behind a gzip stream's trailer.
        out.write(bytes(-out.tell() % 512))
        with open(app, "rb") as f:
            shutil.copyfileobj(f, out)
    shutil.rmtree(stage)
    app.unlink()
    return initrd


def make_disk(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(DISK_SIZE)
    # Initialise inode tables and journal now: lazy init would write in the background in the guest.
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    "-L", "sluicestore", str(path)], check=True)


# --------------------------------------------------------------------------- the machine

def nbdkit_command(image: Path, sock: Path) -> list[str]:
    """The volatile disk: nbdkit's cache filter in writeback mode holds every write in its own
    cache until the client flushes; only then does it write the blocks to the file plugin."""
    return ["nbdkit", "--foreground", "--exit-with-parent", "--unix", str(sock),
            "--filter=cache", "file", f"file={image}", "cache=writeback",
            "cache-min-block-size=4096"]


class Machine:
    """nbdkit (the volatile disk cache) + qemu. Started and killed by PID."""

    def __init__(self, work: Path, diskdir: Path, base: Path, initrd: Path, mutate: str | None,
                 central_port: int, accel_name: str):
        self.work = work
        self.diskdir = diskdir
        self.disk = diskdir / "store.img"
        self.sock = diskdir / "nbd.sock"
        self.base = base
        self.initrd = initrd
        self.mutate = mutate
        self.central_port = central_port
        self.accel = accel_name
        self.port = free_port()
        self.nbdkit: subprocess.Popen | None = None
        self.qemu: subprocess.Popen | None = None
        self.console: Path | None = None
        self.serial_sock = work / "serial.sock"
        self.qmp_sock = work / "qmp.sock"
        self.snapshot = diskdir / "booted.state"
        self.boots = 0

    def start(self, label: str, *, from_snapshot: bool = True) -> None:
        """Power on: a fresh nbdkit over the image (its cache empty), then qemu. With a snapshot
        (see take_snapshot) qemu resumes the guest from it instead of booting the kernel again;
        the guest then loads the disk driver, mounts the store and starts sluice."""
        assert self.qemu is None and self.nbdkit is None
        self.boots += 1
        self._start_nbdkit()
        self.console = self.work / f"console-{label}.log"
        if self.console.exists():
            self.console.unlink()
        resume = from_snapshot and self.snapshot.exists()
        cmd = self._qemu_command()
        if resume:
            cmd += ["-incoming", f"exec:cat {self.snapshot}"]
        self.qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=open(self.work / "qemu.log", "ab"),
                                     stderr=subprocess.STDOUT)
        if resume:
            self._send_go(30)

    def _start_nbdkit(self) -> None:
        if self.sock.exists():
            self.sock.unlink()
        self.nbdkit = subprocess.Popen(
            nbdkit_command(self.disk, self.sock), env=self.nbdkit_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.work / "nbdkit.log", "ab"))
        if not wait_until(lambda: self.sock.exists() or self.nbdkit.poll() is not None, 10, 0.02) \
                or self.nbdkit.poll() is not None:
            raise RuntimeError(f"nbdkit did not start; see {self.work / 'nbdkit.log'}")

    def _qemu_command(self) -> list[str]:
        # Identical for the snapshot boot and every resume (migration needs the same machine).
        append = "console=ttyS0 quiet panic=-1 loglevel=4 mitigations=off tsc=reliable " \
                 "no_timer_check i8042.nokbd i8042.noaux i8042.nopnp cryptomgr.notests"
        if self.mutate == "nosync":
            append += " powercut.mutate=nosync"
        elif self.mutate == "nobarrier":
            # ext4 then never sends a flush: fsync returns once the disk has the writes in its
            # volatile cache, as on a device that ignores flushes.
            append += " powercut.mountopts=nobarrier"
        netdev = (f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:1883,"
                  f"guestfwd=tcp:{GUEST_CENTRAL}:{GUEST_CENTRAL_PORT}-"
                  f"cmd:socat - TCP:127.0.0.1:{self.central_port}")
        for sock in (self.serial_sock, self.qmp_sock):
            if sock.exists():
                sock.unlink()
        return ["qemu-system-x86_64", "-accel", self.accel, "-m", "1024", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", str(self.base / "vmlinuz"), "-initrd", str(self.initrd),
                "-append", append,
                # The console goes to a file; the socket lets the driver type "go" (resume).
                "-chardev", f"socket,id=ser0,path={self.serial_sock},server=on,wait=off,"
                            f"logfile={self.console}",
                "-serial", "chardev:ser0",
                "-qmp", f"unix:{self.qmp_sock},server=on,wait=off",
                # cache=writeback: the guest sees a volatile write cache and sends flushes,
                # which qemu passes on to nbdkit as NBD_CMD_FLUSH.
                "-drive", f"file.driver=nbd,file.server.type=unix,file.server.path={self.sock},"
                          f"if=virtio,format=raw,cache=writeback",
                "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]

    def _send_go(self, timeout: float) -> None:
        """Once the incoming migration has finished (input sent earlier would be overwritten
        by the restored UART state), type "go" until the guest says it got it."""
        deadline = time.monotonic() + timeout
        qmp = None
        while time.monotonic() < deadline and self.qemu.poll() is None:
            try:
                if qmp is None:
                    qmp = QMP(self.qmp_sock)
                status = qmp.command("query-status").get("status")
                if status == "paused":  # the snapshot was saved from a stopped machine
                    qmp.command("cont")
                    continue
                if status != "running":  # "inmigrate": still loading
                    time.sleep(0.05)
                    continue
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.serial_sock))
                    s.sendall(b"go\n")
                    if wait_until(lambda: "POWERCUT: GO" in self.console_text(), 3, 0.05):
                        break
            except (OSError, RuntimeError):
                time.sleep(0.05)
        if qmp is not None:
            qmp.close()

    def take_snapshot(self, timeout: float) -> float:
        """Boots the kernel once, up to the point where init waits before touching the store
        disk (its driver not even loaded), and saves the machine's state to a file: every later
        power-on resumes from there, skipping a kernel boot that takes 30-60 s under TCG."""
        t = time.monotonic()
        self.start("snapshot-boot", from_snapshot=False)
        if not wait_until(lambda: "POWERCUT: WAITING-FOR-GO" in self.console_text()
                          or self.qemu.poll() is not None, timeout, 0.2) or self.qemu.poll() is not None:
            raise RuntimeError(f"snapshot boot did not reach init:\n{self.console_text()[-2000:]}")
        qmp = QMP(self.qmp_sock)
        qmp.command("stop")
        qmp.command("migrate", uri=f"exec:cat > {self.snapshot}")
        if not wait_until(lambda: qmp.command("query-migrate").get("status") in ("completed", "failed"),
                          120, 0.2) or qmp.command("query-migrate").get("status") != "completed":
            raise RuntimeError(f"saving the snapshot failed: {qmp.command('query-migrate')}")
        qmp.close()
        self.cut_power()
        return time.monotonic() - t

    def nbdkit_env(self) -> dict:
        # The cache filter keeps unflushed blocks in a deleted temporary file under TMPDIR.
        return dict(os.environ, TMPDIR=str(self.diskdir))

    def check_disk(self) -> str:
        return diskcheck.check(nbdkit_command(self.diskdir / "check.img", self.sock),
                               self.nbdkit_env(), self.sock, self.diskdir / "check.img")

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace") if self.console else ""
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> tuple[bool, str]:
        """Until the gateway in the guest answers an MQTT CONNECT with a CONNACK."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.console_text()
            if "POWERCUT: STORE-MOUNT-FAILED" in text:
                return False, "the store's filesystem did not mount"
            if "POWERCUT: SLUICE-EXITED" in text:
                return False, "sluice exited at start"
            if self.qemu.poll() is not None:
                return False, f"qemu exited with {self.qemu.returncode}"
            if "POWERCUT: SLUICE-STARTED" in text and mqtt_connack(self.port):
                return True, ""
            time.sleep(0.1)
        return False, f"no CONNACK within {timeout:.0f}s"

    def cut_power(self) -> None:
        """SIGKILL qemu (CPU, RAM, guest page cache) and nbdkit (the unflushed writes)."""
        for p in (self.qemu, self.nbdkit):
            if p is not None and p.poll() is None:
                p.kill()
        for p in (self.qemu, self.nbdkit):
            if p is not None:
                p.wait(10)
        self.qemu = self.nbdkit = None


class QMP:
    """Just enough of the QEMU Machine Protocol: commands and their results, events skipped."""

    def __init__(self, path: Path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(str(path))
        self.f = self.s.makefile("rwb")
        self._read()  # greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def command(self, name: str, **arguments) -> dict:
        req = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        self.f.write(json.dumps(req).encode() + b"\n")
        self.f.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"QMP {name}: {reply['error']}")
        return reply.get("return", {})

    def close(self) -> None:
        self.f.close()
        self.s.close()


def mqtt_connack(port: int) -> bool:
    """One MQTT 3.1.1 CONNECT (clean session, id 'probe'); True on a CONNACK accepting it."""
    connect = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 5]) + b"probe"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            s.sendall(connect)
            ack = s.recv(4)
            if len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0:
                s.sendall(bytes([0xE0, 0]))
                return True
    except OSError:
        pass
    return False


# --------------------------------------------------------------------------- the run

def run(args) -> int:
    t_setup = time.monotonic()
    sluice = Path(args.sluice).resolve()
    if not os.access(sluice, os.X_OK):
        log(f"powercut: no sluice binary at {sluice} (swift build --product sluice)")
        return 2
    for tool in ("qemu-system-x86_64", "nbdkit", "socat", "mkfs.ext4", "cpio", "mosquitto"):
        if shutil.which(tool) is None:
            log(f"powercut: {tool} is missing (scripts/install-deps.sh installs it)")
            return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sluice-powercut-"))
    work.mkdir(parents=True, exist_ok=True)
    # The disk image and nbdkit's cache on tmpfs: the host never loses power, so the image file
    # only has to outlive the processes, and host fsyncs would only slow the run down.
    shm = Path("/dev/shm")
    base = build_base(dict(os.environ))
    accel_name, accel_why = choose_accel(base, work)
    initrd = pack_initrd(base, sluice, work, args.mutate)
    diskdir = Path(tempfile.mkdtemp(prefix="sluice-powercut-", dir=shm if shm.is_dir() else work))
    make_disk(diskdir / "store.img")
    log(f"powercut: {args.cycles} cycles, seed {seed} (rerun with --seed {seed}), accel {accel_name} ({accel_why}), "
        f"mutation {args.mutate or 'none'}, work {work}; setup {time.monotonic() - t_setup:.1f}s")

    boot_timeout = 60 if accel_name == "kvm" else 300
    machine = Machine(work, diskdir, base, initrd, args.mutate, 0, accel_name)
    central = counter = None
    acked_file = open(work / "acked.txt", "w")
    acked: list[int] = []
    sent: list[int] = []
    boot_failures: list[str] = []
    central_stops = cuts = 0
    next_seq = 1
    boot_times: list[float] = []
    failed = False
    try:
        try:
            log(machine.check_disk())
        except RuntimeError as e:
            log(f"FAILED: the virtual disk does not model a power cut: {e}")
            failed = True
            return 2
        central = Central(work / "central").start()
        machine.central_port = central.port
        log(f"powercut: snapshot of the booted guest taken in "
            f"{machine.take_snapshot(boot_timeout):.0f}s ({machine.snapshot.stat().st_size >> 20} MiB)")
        counter = Counter(central.port, "gw1/sensors/#").start()
        t0 = time.monotonic()
        for cycle in range(1, args.cycles + 1):
            tb = time.monotonic()
            machine.start(f"{cycle:04d}")
            ok, why = machine.wait_ready(boot_timeout)
            boot_times.append(time.monotonic() - tb)
            if not ok:
                boot_failures.append(f"cycle {cycle}: {why}")
                log(f"cycle {cycle}: BOOT FAILED: {why}\n{machine.console_text()[-3000:]}")
                failed = True
                break
            # The central flips at random, so a backlog builds up in the store too.
            if rng.random() < 0.4:
                if central.alive():
                    central.stop()
                    central_stops += 1
                else:
                    central.start()
            pub = NumberedPublisher(machine.port, TOPIC, next_seq).start()
            publish_for = rng.uniform(0.2, 3.0)
            flip_at = rng.uniform(0, publish_for) if rng.random() < 0.3 else None
            start = time.monotonic()
            if flip_at is not None:
                time.sleep(flip_at)
                if central.alive():
                    central.stop()
                    central_stops += 1
                else:
                    central.start()
            time.sleep(max(0.0, publish_for - (time.monotonic() - start)))
            machine.cut_power()  # while the publisher is still sending
            cuts += 1
            a, s = pub.finish()
            acked += a
            sent += s
            acked_file.write("".join(f"{n}\n" for n in a))
            acked_file.flush()
            next_seq = pub.next
            log(f"cycle {cycle}: boot {boot_times[-1]:.1f}s, published {publish_for:.1f}s, "
                f"{len(a)} acked of {len(s)} sent, central {'up' if central.alive() else 'down'}, "
                f"{counter.distinct()} distinct at central")
        loop_time = time.monotonic() - t0
        if failed:
            log(f"FAILED: the gateway did not boot from its store: {boot_failures}")
            return 1
        # The last boot: central up, let the store drain.
        if not central.alive():
            central.start()
        machine.start("final")
        ok, why = machine.wait_ready(boot_timeout)
        if not ok:
            log(f"FAILED: final boot: {why}\n{machine.console_text()[-3000:]}")
            failed = True
            return 1
        acked_set = set(acked)
        t1 = time.monotonic()
        # Until everything acknowledged arrived; give up after 300 s, or after 30 s in which
        # nothing new arrived (a store that lost messages has nothing more to send).
        progress = {"distinct": -1, "at": time.monotonic()}

        def drained_or_stalled() -> bool:
            got_now = set(counter.seqs())
            if acked_set <= got_now:
                return True
            if len(got_now) != progress["distinct"]:
                progress["distinct"], progress["at"] = len(got_now), time.monotonic()
            return time.monotonic() - progress["at"] > 30

        wait_until(drained_or_stalled, 300, 0.2)
        complete = acked_set <= set(counter.seqs())
        drain_time = time.monotonic() - t1
        counter.settle(1.0)
        got = counter.seqs()
        got_set = set(got)
        missing = sorted(acked_set - got_set)
        unexpected = sorted(got_set - set(sent))
        duplicates = len(got) - len(got_set)
        firsts = _first_arrivals(got)
        order_breaks = [(x, y) for x, y in zip(firsts, firsts[1:]) if y <= x]
        dup_bound = WINDOW * (cuts + central_stops)
        boots = sorted(boot_times)
        log(f"{args.cycles} cycles in {loop_time:.0f}s (boot to CONNACK median "
            f"{boots[len(boots) // 2]:.1f}s, max {boots[-1]:.1f}s), drain {drain_time:.1f}s; "
            f"{central_stops} central stops; {len(acked)} acked of {len(sent)} sent; central got "
            f"{len(got)} ({len(got_set)} distinct, {len(got_set - acked_set)} unacked but delivered); "
            f"duplicates {duplicates} (bound {dup_bound}); missing {len(missing)} {missing[:10]}; "
            f"order breaks {len(order_breaks)} {order_breaks[:5]}; unexpected {unexpected[:5]}")
        problems = []
        if len(acked) < args.cycles * 10:
            problems.append("too few messages acknowledged: the run proved little")
        if missing:
            problems.append(f"LOST {len(missing)} acknowledged messages (first {missing[:10]})")
        if unexpected:
            problems.append(f"messages never sent arrived: {unexpected[:10]}")
        if order_breaks:
            problems.append(f"order not kept: {order_breaks[:5]}")
        if duplicates > dup_bound:
            problems.append(f"{duplicates} duplicates, beyond the in-flight window bound {dup_bound}")
        log(f"{args.cycles} cycles, {len(acked)} acknowledged, {len(missing)} lost, "
            f"{duplicates} duplicates")
        if problems:
            log("FAILED: " + "; ".join(problems) + f" (logs in {work})")
            failed = True
            return 1
        log("PASSED")
        return 0
    except BaseException:
        failed = True
        raise
    finally:
        machine.cut_power()
        if counter is not None:
            counter.close()
        if central is not None:
            central.stop()
        acked_file.close()
        shutil.rmtree(diskdir, ignore_errors=True)
        initrd.unlink(missing_ok=True)  # large; the logs stay when the run failed
        if not args.keep and not failed:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cycles", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--mutate", choices=["nosync", "nobarrier"],
                    help="self-check, the run must fail: nosync makes fsync/fdatasync no-ops in "
                         "the guest; nobarrier mounts the store without flushes to the disk")
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs) after a pass")
    ap.add_argument("--sluice", default=str(REPO / ".build" / "debug" / "sluice"))
    args = ap.parse_args()
    if args.cycles < 1:
        ap.error("cycles must be >= 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
