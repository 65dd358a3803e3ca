"""Proves the power-cut disk's one property before a run: a write reaches the image file only
once a flush follows it, and SIGKILL of nbdkit loses every write not flushed.

A minimal NBD client (fixed newstyle handshake, NBD_OPT_EXPORT_NAME, simple replies) talks to
the same nbdkit command line the VM uses: write block A and flush, write block B and no flush,
SIGKILL nbdkit; the image must hold A and not B. A write-through layer (or qemu's own
cache=writeback, which leaves writes in the host page cache) would keep B and fail this check.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path

REQUEST_MAGIC = 0x25609513
REPLY_MAGIC = 0x67446698
CMD_WRITE, CMD_FLUSH = 1, 3


class NBDClient:
    def __init__(self, sock_path: Path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(str(sock_path))
        magic, opt_magic, _flags = struct.unpack(">8s8sH", self._recv(18))
        if magic != b"NBDMAGIC" or opt_magic != b"IHAVEOPT":
            raise RuntimeError("not a newstyle NBD server")
        self.s.sendall(struct.pack(">I", 1 | 2))  # FIXED_NEWSTYLE | NO_ZEROES
        self.s.sendall(b"IHAVEOPT" + struct.pack(">II", 1, 0))  # EXPORT_NAME ""
        self.size, self.flags = struct.unpack(">QH", self._recv(10))
        self.handle = 0

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("NBD server closed the connection")
            buf += chunk
        return buf

    def _request(self, cmd: int, offset: int = 0, data: bytes = b"") -> None:
        self.handle += 1
        self.s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, self.handle, offset,
                                   len(data)) + data)
        magic, error, handle = struct.unpack(">IIQ", self._recv(16))
        if magic != REPLY_MAGIC or handle != self.handle or error:
            raise RuntimeError(f"NBD command {cmd} failed: error {error}")

    def write(self, offset: int, data: bytes) -> None:
        self._request(CMD_WRITE, offset, data)

    def flush(self) -> None:
        self._request(CMD_FLUSH)


def check(nbdkit_cmd: list[str], env: dict, sock: Path, image: Path) -> str:
    """Runs the check on a scratch `image` (created here, 4 MiB). Returns a one-line description;
    raises RuntimeError when the property does not hold."""
    off_a, off_b = 0x100000, 0x200000
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    block_a = b"FLUSHED!" * 512
    block_b = b"VOLATILE" * 512
    if sock.exists():
        sock.unlink()
    proc = subprocess.Popen(nbdkit_cmd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("nbdkit did not start for the disk check")
            time.sleep(0.02)
        client = NBDClient(sock)
        client.write(off_a, block_a)
        client.flush()
        client.write(off_b, block_b)
        time.sleep(0.2)  # give a write-through layer every chance to pass B on
    finally:
        proc.kill()
        proc.wait(10)
    with open(image, "rb") as f:
        f.seek(off_a)
        got_a = f.read(4096)
        f.seek(off_b)
        got_b = f.read(4096)
    image.unlink()
    if got_a != block_a:
        raise RuntimeError("a flushed write did not reach the image")
    if got_b == block_b:
        raise RuntimeError("an unflushed write reached the image: the disk is not volatile")
    return "disk check passed: a flushed write reached the image, an unflushed one was lost at SIGKILL"
