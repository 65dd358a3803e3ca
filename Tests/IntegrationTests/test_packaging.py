"""The Debian package, end to end: build (or take) the .deb, inspect it, run lintian, install it
on this machine, run the installed gateway as the `sluice` user with real MQTT clients, then
remove and purge it. The machine is restored (package purged) even when a step fails.

Environment:
  SLUICE_DEB=PATH       test this prebuilt .deb instead of running packaging/build-deb.sh
                        (a release build takes 6-10 minutes); SLUICE_SKIP_BUILD=1 and
                        SLUICE_BUILD_DIR are passed on to build-deb.sh.
  SLUICE_LINTIAN=1      install lintian with apt-get when it is missing (about 40 s).
  SLUICE_PKG_FORCE=1    run even though a sluice package is already installed (it is purged).

Needs root (dpkg -i), dpkg-deb; mosquitto_pub/mosquitto_sub for the broker check.
PID 1 is not systemd on CI machines: the installed binary is started directly, as the
`sluice` user, with the shipped configuration (only the listener port changed).
"""

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "packaging" / "build-deb.sh"
UNIT = "/lib/systemd/system/sluice.service"
CONF = "/etc/sluice/gateway.conf"
STATE = "/var/lib/sluice"
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/sluice.service"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a .deb: needs root"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb"),
]


def log(message):
    print(f"[packaging] {message}", flush=True)


def run(cmd, check=True, timeout=120, **kwargs):
    log("$ " + " ".join(str(c) for c in cmd))
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    output = (result.stdout + result.stderr).strip()
    if output:
        log(output if len(output) < 4000 else output[:4000] + "\n…")
    if check and result.returncode != 0:
        pytest.fail(f"{cmd[0]} exited with {result.returncode}:\n{output}")
    return result


def package_status():
    """dpkg's status of sluice, e.g. 'install ok installed', 'deinstall ok config-files', or None."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "sluice"], capture_output=True, text=True
    )
    status = result.stdout.strip()
    return status if result.returncode == 0 and status and "not-installed" not in status else None


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def deb():
    given = os.environ.get("SLUICE_DEB")
    if given:
        path = Path(given).resolve()
        assert path.is_file(), f"SLUICE_DEB={given} does not exist"
        log(f"using prebuilt {path}")
        return path
    log(f"building the package with {BUILD_SCRIPT} (release build: 6-10 minutes)")
    started = time.monotonic()
    result = run(["bash", BUILD_SCRIPT], timeout=45 * 60, cwd=ROOT)
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"build-deb.sh did not produce {path}"
    log(f"built {path} in {time.monotonic() - started:.0f} s")
    return path


def test_deb_contents(deb):
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(rf"sluice_[0-9][^_]*_{arch}\.deb", deb.name), deb.name
    log(f"{deb.name}: {deb.stat().st_size / 1e6:.1f} MB")

    info = run(["dpkg-deb", "--info", deb]).stdout
    fields = dict(
        (line.split(":", 1)[0].strip(), line.split(":", 1)[1].strip())
        for line in info.splitlines()
        if re.match(r"^ [A-Z][A-Za-z-]+:", line)
    )
    assert fields["Package"] == "sluice"
    assert fields["Architecture"] == arch
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    # libssl3: libcrypto is dlopen'd (Sources/CLibcrypto), so build-deb.sh names it; dpkg-shlibdeps cannot see it.
    for needed in ("libc6", "liblmdb0", "libssl3", "adduser"):
        assert needed in depends, f"Depends lacks {needed}: {fields['Depends']}"
    for member in ("postinst", "prerm", "postrm", "conffiles", "md5sums"):
        assert re.search(rf"\b{member}\b", info), f"control member {member} missing"

    conffiles = run(["dpkg-deb", "--info", deb, "conffiles"]).stdout.split()
    assert conffiles == [CONF]

    contents = run(["dpkg-deb", "--contents", deb]).stdout.splitlines()
    entries = {}
    for line in contents:
        parts = line.split()
        entries[parts[-1].lstrip(".")] = (parts[0], parts[1])
    for path in (
        "/usr/bin/sluice",
        CONF,
        UNIT,
        "/usr/share/man/man1/sluice.1.gz",
        "/usr/share/doc/sluice/copyright",
        "/usr/share/doc/sluice/mosquitto-keys.md",
        "/usr/share/sluice/grafana/sluice-dashboard.json",
        "/usr/share/sluice/prometheus/sluice-alerts.yml",
        "/usr/share/sluice/prometheus/sluice-alerts.test.yml",
    ):
        assert path in entries, f"{path} not in the package"
    assert entries["/usr/bin/sluice"][0] == "-rwxr-xr-x"
    assert all(owner == "root/root" for _, owner in entries.values()), "files must be root:root"

    # The unit's key settings, and the shipped configuration parsed by the packaged binary.
    with tempfile.TemporaryDirectory(prefix="sluice-deb-") as tree:
        run(["dpkg-deb", "--extract", deb, tree])
        unit = Path(tree, UNIT.lstrip("/")).read_text()
        for setting in (
            "Type=notify",
            "ExecStart=/usr/bin/sluice run -c /etc/sluice/gateway.conf",
            "User=sluice",
            "StateDirectory=sluice",
            "ProtectSystem=strict",
            "NoNewPrivileges=true",
            "WatchdogSec=30",
        ):
            assert re.search(rf"(?m)^{re.escape(setting)}$", unit), f"unit lacks {setting}"
        conf = Path(tree, CONF.lstrip("/"))
        text = conf.read_text()
        for line in ("listener 1883 127.0.0.1", "allow_anonymous true", "persistence true",
                     "persistence_location /var/lib/sluice/", "# connection central"):
            assert re.search(rf"(?m)^{re.escape(line)}\s*$", text), f"gateway.conf lacks '{line}'"
        run([Path(tree, "usr/bin/sluice"), "check", "-c", conf])
        # The shipped fleet files are the repository's, byte for byte.
        for shipped, source in (("grafana/sluice-dashboard.json", "contrib/grafana/sluice-dashboard.json"),
                                ("prometheus/sluice-alerts.yml", "contrib/prometheus/sluice-alerts.yml"),
                                ("prometheus/sluice-alerts.test.yml", "contrib/prometheus/sluice-alerts.test.yml")):
            assert Path(tree, "usr/share/sluice", shipped).read_bytes() == (ROOT / source).read_bytes(), shipped


def test_lintian(deb):
    if shutil.which("lintian") is None and os.environ.get("SLUICE_LINTIAN") == "1":
        log("installing lintian (SLUICE_LINTIAN=1)")
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "lintian"],
            timeout=900, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if shutil.which("lintian") is None:
        pytest.skip("lintian not installed (SLUICE_LINTIAN=1 installs it)")
    result = run(["lintian", "--info", "--display-level", ">=pedantic", "--tag-display-limit", "0", deb],
                 check=False, timeout=600)
    lines = (result.stdout + result.stderr).splitlines()
    tags = [line for line in lines if re.match(r"^[EWIPXO]: ", line)]
    log("lintian tags:\n" + ("\n".join(tags) if tags else "(none)"))
    errors = [line for line in tags if line.startswith("E: ")]
    assert not errors, "lintian errors:\n" + "\n".join(errors)


def test_install_run_remove_purge(deb):
    if package_status() and os.environ.get("SLUICE_PKG_FORCE") != "1":
        pytest.skip(f"sluice is already installed here ({package_status()}); SLUICE_PKG_FORCE=1 purges it")
    if shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None:
        pytest.skip("needs mosquitto_pub and mosquitto_sub (mosquitto-clients)")
    if user_exists("sluice") and os.environ.get("SLUICE_PKG_FORCE") != "1":
        pytest.skip("a sluice user exists already; SLUICE_PKG_FORCE=1 lets the test purge it")

    process = None
    workdir = Path(tempfile.mkdtemp(prefix="sluice-pkg-"))
    stderr_path = workdir / "sluice.log"
    try:
        # Install.
        run(["dpkg", "-i", deb], timeout=300)
        assert package_status() == "install ok installed"

        # User, group, directories and permissions made by postinst.
        user = pwd.getpwnam("sluice")
        group = grp.getgrnam("sluice")
        log(f"user sluice: uid {user.pw_uid}, gid {user.pw_gid}, home {user.pw_dir}, shell {user.pw_shell}")
        assert user.pw_gid == group.gr_gid
        assert user.pw_uid < 1000, "must be a system user"
        assert user.pw_dir == STATE
        assert user.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
        st = os.stat(STATE)
        assert (st.st_uid, st.st_gid) == (user.pw_uid, group.gr_gid)
        assert stat.S_IMODE(st.st_mode) == 0o750
        st = os.stat(CONF)
        assert (st.st_uid, st.st_gid) == (0, group.gr_gid)
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert os.access("/usr/bin/sluice", os.X_OK)
        assert os.path.isfile(UNIT)
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "sluice"]).stdout
        assert CONF in conffiles
        if shutil.which("deb-systemd-helper"):
            assert os.path.islink(WANTS_LINK), "postinst should enable sluice.service"
        version = run(["/usr/bin/sluice", "version"]).stdout.strip()
        assert re.fullmatch(r"sluice [0-9].*", version), version
        run(["/usr/bin/sluice", "check", "-c", CONF])

        # The unit, now that its ExecStart binary exists.
        if shutil.which("systemd-analyze"):
            result = run(["systemd-analyze", "verify", "--man=no", UNIT], check=False, timeout=120)
            output = (result.stdout + result.stderr).strip()
            assert result.returncode == 0 and "sluice.service" not in output, output
        else:
            log("systemd-analyze not installed: unit not verified")

        # Run the installed gateway as the sluice user with the shipped configuration, only the
        # listener port changed (the store is the real /var/lib/sluice).
        port = free_port()
        shipped = Path(CONF).read_text()
        config, count = re.subn(r"(?m)^listener\s+1883\s+127\.0\.0\.1\s*$", f"listener {port} 127.0.0.1", shipped)
        assert count == 1, "the shipped configuration should have one 'listener 1883 127.0.0.1' line"
        os.chmod(workdir, 0o755)
        conf = workdir / "gateway.conf"
        conf.write_text(config)
        os.chmod(conf, 0o644)
        setpriv = shutil.which("setpriv")
        if setpriv:
            cmd = [setpriv, "--reuid=sluice", "--regid=sluice", "--init-groups", "--no-new-privs",
                   "--inh-caps=-all", "--bounding-set=-all"]
        else:
            cmd = ["runuser", "-u", "sluice", "--"]
        cmd += ["/usr/bin/sluice", "run", "-c", str(conf)]
        log("$ " + " ".join(cmd))
        with open(stderr_path, "w") as stderr_file:
            process = subprocess.Popen(cmd, cwd=STATE, stdout=stderr_file, stderr=subprocess.STDOUT,
                                       env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        assert wait_for_port(port, process), "sluice did not listen:\n" + stderr_path.read_text()

        # A retained message first (proves the subscription is in place), then a live one.
        pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
        # (A connection dropped right after accept as the unprivileged user but not as root
        # points at a socket option needing a capability, e.g. .socketOption(.tcp_nodelay),
        # which is SO_DEBUG at SOL_SOCKET level: use .tcpOption(.tcp_nodelay).)
        run(pub + ["-t", "sensors/retained", "-m", "kept", "-r"])
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "sensors/#", "-v",
             "-C", "2", "-W", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        first = sub.stdout.readline().strip()
        log(f"subscriber got: {first!r}")
        run(pub + ["-t", "sensors/live", "-m", "hello from the package test"])
        rest, err = sub.communicate(timeout=30)
        received = [first] + rest.strip().splitlines()
        log(f"subscriber got: {received[1:]!r} {err.strip()}")
        assert received == ["sensors/retained kept", "sensors/live hello from the package test"], received

        # Graceful stop on SIGTERM, as systemd does.
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        process = None
        log("sluice output:\n" + stderr_path.read_text().strip())
        assert code == 0, f"sluice exited with {code} on SIGTERM"
        owners = {os.stat(p).st_uid for p in Path(STATE).rglob("*")}
        log(f"{STATE} after the run: {sorted(str(p) for p in Path(STATE).rglob('*'))}")
        assert owners <= {user.pw_uid}, "everything in the store belongs to sluice"
        marker = Path(STATE) / "kept-by-remove"
        marker.write_text("data")

        # Remove: program gone; configuration, data and user kept.
        run(["dpkg", "-r", "sluice"], timeout=300)
        assert package_status() == "deinstall ok config-files", package_status()
        assert not os.path.exists("/usr/bin/sluice")
        assert not os.path.exists(UNIT)
        assert os.path.isfile(CONF), "dpkg -r must keep the configuration"
        assert marker.is_file(), "dpkg -r must keep /var/lib/sluice"
        assert user_exists("sluice"), "dpkg -r keeps the user (files may still belong to it)"

        # Purge: everything gone.
        run(["dpkg", "--purge", "sluice"], timeout=300)
        assert package_status() is None, package_status()
        assert not os.path.exists("/etc/sluice"), os.listdir("/etc/sluice")
        assert not os.path.exists(STATE)
        assert not user_exists("sluice")
        assert not group_exists("sluice")
        assert not os.path.lexists(WANTS_LINK)
        assert not os.path.lexists("/etc/systemd/system/sluice.service"), "purge must unmask the unit"
    finally:
        if process is not None:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            log(f"sluice exit status {process.returncode}; its output:\n" + stderr_path.read_text().strip())
        if package_status():
            log("cleaning up: dpkg --purge sluice")
            subprocess.run(["dpkg", "--purge", "sluice"], capture_output=True, timeout=300)
        shutil.rmtree(workdir, ignore_errors=True)
