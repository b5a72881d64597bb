# SPDX-License-Identifier: GPL-2.0-or-later
"""A loop-mounted btrfs and a running btrfs-vdod, for the integration
tests, the demo and the benchmarks.

Everything is made under /var/tmp/btrfs-vdo-* so that tests/cleanup can
find and undo what a killed run left behind.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# Everything a run makes lives under /var/tmp/PREFIX*; make gives each run
# its own prefix so tests/cleanup of one run leaves another's alone.
PREFIX = os.environ.get("BTRFS_VDO_RUN_PREFIX", "btrfs-vdo-")
BIN = os.environ.get(
    "BTRFS_VDO_BIN",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin"),
)


def run(*args, **kwargs):
    """Run a command, failing loudly with its output."""
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(args, **kwargs)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(args)} failed: {exc.stderr.strip()}") from exc


class LoopBtrfs:
    """A sparse image file formatted as btrfs and mounted on a loop device.

    The loop device is released by the unmount itself (mount -o loop sets
    autoclear)."""

    def __init__(self, size, *, mount_options=()):
        self.workdir = tempfile.mkdtemp(prefix=PREFIX, dir="/var/tmp")
        self.image = os.path.join(self.workdir, "fs.img")
        self.mnt = os.path.join(self.workdir, "mnt")
        os.mkdir(self.mnt)
        with open(self.image, "wb") as image:
            image.truncate(size)
        run("mkfs.btrfs", "-q", "-f", self.image)
        options = ",".join(("loop",) + tuple(mount_options))
        run("mount", "-o", options, self.image, self.mnt)

    def close(self):
        if os.path.ismount(self.mnt):
            for _ in range(50):
                if subprocess.run(["umount", self.mnt], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                run("umount", "--lazy", self.mnt)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Daemon:
    """btrfs-vdod listening on a socket of its own; its log is kept for
    failure messages. env is added to the daemon's environment at each
    start, and may be changed between starts. wrapper, a command line
    ending where the daemon's begins, runs the daemon the way a service
    manager would (with fewer capabilities, say)."""

    def __init__(self, *extra_args, env=None, wrapper=()):
        self.rundir = tempfile.mkdtemp(prefix=PREFIX + "run-", dir="/var/tmp")
        self.socket = os.path.join(self.rundir, "sock", "btrfs-vdod.sock")
        self.log_path = os.path.join(self.rundir, "daemon.log")
        # What the daemon remembers across its restarts, never the system's.
        self.state_dir = os.path.join(self.rundir, "state")
        self.extra_args = extra_args
        self.env = dict(env or {})
        self.wrapper = list(wrapper)
        self.proc = None
        self.start()

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.wrapper, os.path.join(BIN, "btrfs-vdod"), "--socket", self.socket,
                 "--log-level", "debug", "--state-dir", self.state_dir, *self.extra_args],
                stdout=log, stderr=log, env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"btrfs-vdod exited at start:\n{self.log()}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.connect(self.socket)
                return
            time.sleep(0.05)
        raise RuntimeError(f"btrfs-vdod did not listen:\n{self.log()}")

    def kill(self):
        """SIGKILL, as a crash or power loss would end it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()

    def close(self):
        self.stop()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_BLOCK = 4096
_ZERO = bytes(_BLOCK)


def changed_before(path, t):
    """Whether path still exists and was last changed before t: a temp
    file a crash left, not one a restarted daemon is writing."""
    try:
        return os.lstat(path).st_mtime < t
    except FileNotFoundError:
        return False


def sha256(path):
    """A digest of a file's size and content in which holes and written
    zeros are alike, so sparse and dense copies of the same bytes match.
    Holes are skipped, so multi-GiB sparse images hash fast."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(size.to_bytes(8, "little"))
        offset = 0
        while offset < size:
            try:
                offset = os.lseek(f.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only holes remain
                break
            f.seek(offset)
            chunk = f.read(1 << 20)
            for start in range(0, len(chunk), _BLOCK):
                block = chunk[start:start + _BLOCK]
                if block != _ZERO[:len(block)]:
                    digest.update((offset + start).to_bytes(8, "little"))
                    digest.update(block)
            offset += len(chunk)
    return digest.hexdigest()


def write_at(path, offset, data):
    """Write into an image the way a VM writes its disk, and sync."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def compressible(seed, size):
    """size bytes of text that differ per seed, for the optimizer."""
    line = f"{seed}: the quick brown fox jumps over the lazy dog\n".encode()
    return (line * (size // len(line) + 1))[:size]


def numbered_text(seed, size):
    """size bytes of text in numbered lines: it compresses well, and no
    4 KiB block repeats, so dedup finds nothing in it."""
    out, i = [], 0
    total = 0
    while total < size:
        line = f"{seed} line {i}: the quick brown fox jumps over the lazy dog\n".encode()
        out.append(line)
        total += len(line)
        i += 1
    return b"".join(out)[:size]


def pattern(seed, size):
    """size bytes that compress poorly and differ per seed."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 4
    return bytes(out[:size])
