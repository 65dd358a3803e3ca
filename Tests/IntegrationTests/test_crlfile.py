"""`crlfile` on a TLS listener: a client certificate revoked by the CA's CRL is refused at the handshake,
as Mosquitto refuses it; a CRL that cannot be used is a configuration error for `check` and `run`.

The CA, the certificates and the CRL are made by `openssl ca` in a temporary directory."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import IS_SLUICE, free_port, port_listening, require_sluice_binary

CA_CONF = """[ca]
default_ca = test_ca
[test_ca]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir
certificate = $dir/{name}.pem
private_key = $dir/{name}.key
default_md = sha256
default_days = 30
default_crl_days = 30
policy = anything
copy_extensions = copy
[anything]
commonName = supplied
[server_ext]
subjectAltName = DNS:localhost,IP:127.0.0.1
"""


def openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"


class CertificateAuthority:
    """A throwaway CA run with `openssl ca`, so certificates are revoked and CRLs made as an operator would."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.name = name
        directory.mkdir()
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        (directory / "crlnumber").write_text("01\n")
        self.conf = directory / "ca.cnf"
        self.conf.write_text(CA_CONF.format(dir=directory, name=name))
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30", "-subj", f"/CN={name}", cwd=directory)
        self.pem = directory / f"{name}.pem"

    def issue(self, common_name: str, *, server: bool = False) -> tuple[Path, Path]:
        key, csr, pem = (self.dir / f"{common_name}.{suffix}" for suffix in ("key", "csr", "pem"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}", cwd=self.dir)
        extra = ["-extensions", "server_ext"] if server else []
        openssl("ca", "-batch", "-config", str(self.conf), "-notext", "-in", str(csr), "-out", str(pem), *extra,
                cwd=self.dir)
        return pem, key

    def revoke(self, pem: Path) -> None:
        openssl("ca", "-config", str(self.conf), "-revoke", str(pem), cwd=self.dir)

    def crl(self) -> Path:
        path = self.dir / "crl.pem"
        openssl("ca", "-config", str(self.conf), "-gencrl", "-out", str(path), cwd=self.dir)
        return path


@pytest.fixture
def pki(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca", "Sluice Test CRL CA")
    server = ca.issue("localhost", server=True)
    good = ca.issue("device-good")
    revoked = ca.issue("device-revoked")
    ca.revoke(revoked[0])
    return {"ca": ca, "server": server, "good": good, "revoked": revoked, "crl": ca.crl()}


def listener_conf(port: int, pki: dict, crl: Path) -> str:
    return "\n".join([
        f"listener {port} 127.0.0.1", f"certfile {pki['server'][0]}", f"keyfile {pki['server'][1]}",
        f"cafile {pki['ca'].pem}", "require_certificate true", f"crlfile {crl}",
    ])


def tls_pub(port: int, pki: dict, client: tuple[Path, Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", str(pki["ca"].pem),
         "--cert", str(client[0]), "--key", str(client[1]), "-t", "crl/x", "-m", "hello", "-q", "1"],
        capture_output=True, text=True, timeout=15)


def start_tls(start_broker, port: int, conf: str):
    """start_broker waits for the plain listener only; the TLS listener binds after it (its crlfile loaded
    first, and with it libcrypto), so wait for that port too."""
    b = start_broker(conf)
    deadline = time.monotonic() + 10
    while not port_listening(port) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert port_listening(port), b.log()
    return b


def logged(b, text: str, timeout: float = 5) -> bool:
    """The refusal may be logged just after the client has given up: wait for it."""
    deadline = time.monotonic() + timeout
    while text not in b.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    return text in b.log()


def test_revoked_client_certificate_is_refused(start_broker, pki):
    port = free_port()
    b = start_tls(start_broker, port, listener_conf(port, pki, pki["crl"]))
    good = tls_pub(port, pki, pki["good"])
    assert good.returncode == 0, good.stderr
    refused = tls_pub(port, pki, pki["revoked"])
    assert refused.returncode != 0, "a revoked certificate was accepted"
    # Still serving good clients after a refusal.
    assert tls_pub(port, pki, pki["good"]).returncode == 0
    if IS_SLUICE:
        assert logged(b, "is revoked") and "client certificate refused" in b.log(), b.log()
        assert "CN=device-revoked" in b.log(), b.log()


def test_crl_without_revocations_refuses_no_one(start_broker, tmp_path, pki):
    other = CertificateAuthority(tmp_path / "fresh", "Sluice Test CRL CA 2")
    server, client = other.issue("localhost", server=True), other.issue("device")
    port = free_port()
    start_tls(start_broker, port, listener_conf(port, {"ca": other, "server": server}, other.crl()))
    assert tls_pub(port, {"ca": other}, client).returncode == 0


def crl_problem(tmp_path: Path, pki: dict, crl: Path, cafile: Path | None = None) -> tuple[str, str]:
    sluice = require_sluice_binary()
    conf = tmp_path / "gw.conf"
    text = listener_conf(free_port(), pki, crl)
    if cafile:
        text = text.replace(f"cafile {pki['ca'].pem}", f"cafile {cafile}")
    conf.write_text(text + "\n")
    check = subprocess.run([str(sluice), "check", "-c", str(conf)], capture_output=True, text=True, timeout=20)
    run = subprocess.run([str(sluice), "run", "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert check.returncode != 0, check.stdout
    assert run.returncode != 0, run.stderr
    return check.stderr, run.stderr


@pytest.mark.parametrize("content, words", [
    ("not a CRL\n", "no PEM certificate revocation list"),
    ("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "no PEM certificate revocation list"),
])
def test_unusable_crlfile_is_a_configuration_error(tmp_path, pki, content, words):
    if not IS_SLUICE:
        pytest.skip("Sluice's configuration errors")
    bad = tmp_path / "bad-crl.pem"
    bad.write_text(content)
    for output in crl_problem(tmp_path, pki, bad):
        assert str(bad) in output and words in output, output


def test_crl_not_signed_by_a_cafile_ca_is_a_configuration_error(tmp_path, pki):
    if not IS_SLUICE:
        pytest.skip("Sluice's configuration errors (Mosquitto loads the CRL and refuses clients later)")
    stranger = CertificateAuthority(tmp_path / "stranger", "Stranger CA")
    for output in crl_problem(tmp_path, pki, stranger.crl()):
        assert "issued by /CN=Stranger CA" in output and "not a CA in cafile/capath" in output, output
    # A CRL naming the right CA but signed by another key: the signature is checked.
    impostor = CertificateAuthority(tmp_path / "impostor", "Sluice Test CRL CA")
    for output in crl_problem(tmp_path, pki, impostor.crl()):
        assert "signature does not verify" in output, output


def two_ca_listener(tmp_path, pki, start_broker):
    """A listener trusting two CAs, with the CRL of the first only: returns the port and a client of the second."""
    second = CertificateAuthority(tmp_path / "second", "Second CA")
    client = second.issue("device-second")
    both = tmp_path / "both-cas.pem"
    both.write_text(pki["ca"].pem.read_text() + second.pem.read_text())
    port = free_port()
    conf = listener_conf(port, pki, pki["crl"]).replace(f"cafile {pki['ca'].pem}", f"cafile {both}")
    b = start_tls(start_broker, port, conf)
    return b, port, {"ca": pki["ca"]}, client


def test_certificate_of_a_ca_without_a_crl_is_refused(start_broker, tmp_path, pki):
    # OpenSSL's CRL check (Mosquitto's) wants a CRL for the leaf's issuer: without one the client is refused.
    b, port, trust, client = two_ca_listener(tmp_path, pki, start_broker)
    assert tls_pub(port, trust, client).returncode != 0
    assert tls_pub(port, trust, pki["good"]).returncode == 0
    if IS_SLUICE:
        assert logged(b, "has no revocation list of its issuer /CN=Second CA"), b.log()


@pytest.mark.parametrize("last, next_", [("20200101000000Z", "20200201000000Z"), ("20990101000000Z", "20990201000000Z")])
def test_expired_or_future_crl_refuses_every_certificate(start_broker, pki, last, next_):
    ca = pki["ca"]
    path = ca.dir / "dated-crl.pem"
    openssl("ca", "-config", str(ca.conf), "-gencrl", "-crl_lastupdate", last, "-crl_nextupdate", next_,
            "-out", str(path), cwd=ca.dir)
    port = free_port()
    b = start_tls(start_broker, port, listener_conf(port, pki, path))
    assert tls_pub(port, pki, pki["good"]).returncode != 0, "a certificate passed a CRL outside its validity"
    if IS_SLUICE:
        assert logged(b, "has expired" if last.startswith("2020") else "is not valid yet"), b.log()


def test_sighup_reads_the_crl_again(start_broker, pki):
    port = free_port()
    b = start_tls(start_broker, port, listener_conf(port, pki, pki["crl"]))
    assert tls_pub(port, pki, pki["good"]).returncode == 0
    ca = pki["ca"]
    ca.revoke(pki["good"][0])
    ca.crl()  # rewrites crl.pem with both certificates revoked
    b.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while tls_pub(port, pki, pki["good"]).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tls_pub(port, pki, pki["good"]).returncode != 0, "the reloaded CRL was not applied"
    if IS_SLUICE:
        assert "configuration reloaded: applied password file, ACL file, crlfile" in b.log(), b.log()
        # A damaged file on SIGHUP: the lists read before stay in force, and the log says so.
        good_crl = pki["crl"].read_text()
        pki["crl"].write_text("damaged\n")
        b.proc.send_signal(signal.SIGHUP)
        assert logged(b, "crlfile not reloaded"), b.log()
        assert tls_pub(port, pki, pki["good"]).returncode != 0
        assert tls_pub(port, pki, pki["revoked"]).returncode != 0
        assert tls_pub(port, pki, ca.issue("device-third")).returncode == 0, "not the old lists: everyone refused"
        pki["crl"].write_text(good_crl)
