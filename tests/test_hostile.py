# SPDX-License-Identifier: GPL-2.0-or-later
"""A hostile local administrator: at every name the daemon touches in a
pool, from the volume files to the optimizer's own state, plant in turn a
symlink, a hard link to a file outside the pool, a directory and a FIFO,
then run the operations that touch that name. Nothing outside the pool
may change, nothing may hang, and the daemon must keep serving."""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import qubes.exc
from qubes.tests import fakes

from tests import harness
from tests.base import MiB, IntegrationCase, quiet

# Every operation, and every check of the daemon, is given this long.
OP_TIMEOUT = 10
REVISION = "private.img.9@2025-01-01T00:00:00Z"
KINDS = ("symlink", "hardlink", "directory", "fifo")


@dataclasses.dataclass(frozen=True)
class Name:
    """A name relative to the pool, and the operations that touch it.
    early names are planted before the pool is set up, which opens it:
    the daemon opens them when it opens the pool or its first job runs."""

    path: str
    ops: tuple
    early: bool = False
    directory: bool = False  # the daemon makes a directory there


NAMES = [
    Name("appvms/work/private.img", ("start", "stop", "export", "resize", "import_volume", "optimize", "info")),
    Name("appvms/work/private-dirty.img", ("start", "stop", "info")),
    Name("appvms/work/private-precache.img", ("start", "stop", "info")),
    Name("appvms/work/private-import.img", ("import_data", "import_data_end", "info")),
    Name("appvms/work/" + REVISION, ("revert", "start", "stop", "optimize", "info")),
    Name("appvms/work/private.img~planted", ("start", "stop", "optimize", "info")),
    Name("appvms/clone/private-import.img", ("import_volume", "info")),
    Name("appvms/fresh", ("create", "start", "stop", "remove"), directory=True),
    Name("vm-templates/fedora/root.img", ("start", "stop", "info")),
    Name(".btrfs-vdo", ("start", "stop", "optimize", "info"), early=True, directory=True),
    Name(".btrfs-vdo/state.json", ("start", "stop", "optimize", "info"), early=True),
    Name(".btrfs-vdo/state.json~", ("start", "stop", "optimize", "info"), early=True),
    Name(".btrfs-vdo/dedup.idx", ("start", "stop", "optimize", "info"), early=True),
    Name(".btrfs-vdo/dedup.idx.new", ("start", "stop", "optimize", "info"), early=True),
    Name(".btrfs-vdo/tmp", ("start", "stop", "optimize", "info"), early=True, directory=True),
    Name(".btrfs-vdo/tmp/copy-1", ("start", "stop", "optimize", "info"), early=True),
]


def tree_digest(root):
    """Every entry under root: type, size, mtime and content digest."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            digest = ""
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


MASK = (1 << 64) - 1
P1, P2, P3, P4 = 11400714785074694791, 14029467366897019727, 1609587929392839161, 9650029242287828579


def xxh64(data):
    """XXH64 with seed 0 of data, a non-empty multiple of 32 bytes long:
    the checksum of a dedup index header."""
    def rotl(x, r):
        return ((x << r) | (x >> (64 - r))) & MASK

    def rnd(acc, lane):
        return rotl((acc + lane * P2) & MASK, 31) * P1 & MASK

    v = [(P1 + P2) & MASK, P2, 0, -P1 & MASK]
    for i in range(0, len(data), 8):
        v[i // 8 % 4] = rnd(v[i // 8 % 4], int.from_bytes(data[i:i + 8], "little"))
    h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & MASK
    for lane in v:
        h = ((h ^ rnd(0, lane)) * P1 + P4) & MASK
    h = (h + len(data)) & MASK
    for shift, prime in ((33, P2), (29, P3)):
        h = (h ^ (h >> shift)) * prime & MASK
    return h ^ (h >> 32)


def crafted_index_header(size):
    """A dedup index header with a valid checksum claiming a table of size
    bytes, and nothing after it."""
    head = b"bvdo-dix" + (1).to_bytes(4, "little") + (4096).to_bytes(4, "little")
    head += size.to_bytes(8, "little") + (size // 4096).to_bytes(8, "little")
    return (head + xxh64(head).to_bytes(8, "little")).ljust(4096, b"\0")


def release_fifo(path):
    """Unblock whoever waits to read the FIFO at path: it reads an end of
    file. A daemon stuck there would stall every later case."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        time.sleep(0.05)


class Hostile(IntegrationCase):
    def setUp(self):
        super().setUp()
        # On the pool's filesystem, so that hard links to it can be made.
        self.outside = os.path.join(self.fs.mnt, "outside-" + self.id().rsplit(".", 1)[-1])
        self.decoy = os.path.join(self.outside, "decoy")
        self.make_outside()
        self.cli = (os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket)

    def make_outside(self):
        """A decoy file and a directory holding another, dated in the past,
        and their digest."""
        shutil.rmtree(self.outside, ignore_errors=True)
        inner = os.path.join(self.outside, "dir", "inner")
        os.makedirs(os.path.dirname(inner))
        for path, data in ((self.decoy, b"secret\n" * 1000), (inner, b"inner\n")):
            with open(path, "wb") as f:
                f.write(data)
        old = time.time() - 3 * 24 * 3600
        for path in (self.decoy, inner, os.path.dirname(inner)):
            os.utime(path, (old, old))
        self.before = tree_digest(self.outside)

    def pool_dir(self, case):
        """The directory use_pool(case) sets up."""
        return os.path.join(self.fs.mnt, self.id().rsplit(".", 1)[-1] + "-pools", case)

    def plant(self, kind, name):
        path = self.path(name.path)
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "symlink":
            os.symlink(os.path.join(self.outside, "dir") if name.directory else self.decoy, path)
        elif kind == "hardlink":
            os.link(self.decoy, path)
        elif kind == "directory":
            os.mkdir(path)
            with open(os.path.join(path, "inside"), "wb") as f:
                f.write(b"x")
        else:
            os.mkfifo(path)

    def world(self, name):
        """A template and an AppVM with a commit, optimized; and a second
        AppVM when name's operations clone into it."""
        tpl = self.make_template()
        work = self.make_appvm("work", tpl)
        self.start(work)
        self.write_volume(work, "private", 0, harness.pattern("private", MiB))
        self.stop(work)
        vms = {"fedora": tpl, "work": work}
        if "import_volume" in name.ops:
            vms["clone"] = self.make_appvm("clone", tpl)
        self.cli_run("jobs", "--wait")
        return vms

    def cli_run(self, *args):
        return subprocess.run([*self.cli, *args], capture_output=True, text=True, timeout=OP_TIMEOUT, check=False)

    def bounded(self, what, fn, timeout=OP_TIMEOUT):
        """fn's result, run in a thread of its own and given timeout: a
        shim call stuck on a daemon that never answers cannot always be
        cancelled, and must not stall the cases after it."""
        result = []

        def run():
            try:
                result.append((fn(), None))
            except Exception as err:  # handed to the caller below
                result.append((None, err))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{what} did not return within {timeout} s")
        value, err = result[0]
        if err is not None:
            raise err
        return value

    def run_op(self, name, vms):
        """Run one operation; a refusal is an answer."""
        work, clone = vms.get("work"), vms.get("clone")
        if name == "optimize":
            self.cli_run("optimize", "--full", "--json", self.dir_path + ":appvms/work/private")
            return
        if name == "create":
            fresh = fakes.FakeVM(self.app, "fresh", template=vms["fedora"], volume_config=fakes.APPVM_VOLUMES,
                                 base_dir=self.qubes_dir)
            os.makedirs(fresh.dir_path, exist_ok=True)
            fresh.init_storage()
            vms["fresh"] = fresh
            self.run_async(fresh.storage.create())
            return
        vm = vms.get("fresh", work)
        coro = {
            "start": lambda: vm.storage.start(),
            "stop": lambda: vm.storage.stop(),
            "remove": lambda: vm.storage.remove(),
            "revert": lambda: work.volumes["private"].revert("9"),
            "resize": lambda: work.storage.resize("private", work.volumes["private"].size + MiB),
            "export": lambda: self.export(work),
            "import_data": lambda: work.storage.import_data("private", None),
            "import_data_end": lambda: work.storage.import_data_end("private", True),
            "import_volume": lambda: clone.storage.import_volume(clone.volumes["private"], work.volumes["private"]),
            "info": lambda: work.storage.verify(),
        }[name]()
        self.run_async(coro)

    async def export(self, vm):
        path = await vm.storage.export("private")
        await vm.storage.export_end("private", path)

    def assert_serves(self, context):
        out = self.cli_run("status")
        self.assertEqual(out.returncode, 0, f"{context}: the daemon does not answer: {out.stderr}")
        self.assertIsNone(self.daemon.proc.poll(), f"{context}: the daemon died")

    def test_planted_names_lead_nowhere(self):
        failures = []
        for number, name in enumerate(NAMES):
            for kind in KINDS:
                context = f"{kind} at {name.path}"
                if kind == "directory" and name.directory:
                    continue  # what the daemon makes there anyway
                with self.subTest(context):
                    case = f"{number:02d}-{kind}"
                    with quiet():
                        try:
                            if name.early:
                                self.dir_path = self.pool_dir(case)
                                self.plant(kind, name)
                            self.use_pool(case)
                            vms = self.bounded("setting up the pool", lambda: self.world(name), 6 * OP_TIMEOUT)
                            if not name.early:
                                self.plant(kind, name)
                            for op in name.ops:
                                try:
                                    self.bounded(op, lambda: self.run_op(op, vms))
                                except qubes.exc.StoragePoolException:
                                    pass
                        except qubes.exc.StoragePoolException:
                            pass  # the pool refused to be opened around the plant
                        except (TimeoutError, subprocess.TimeoutExpired) as err:
                            failures.append(f"{context}: hung: {err}")
                            print(failures[-1], file=sys.stderr, flush=True)
                            if kind == "fifo":
                                release_fifo(self.path(name.path))
                    self.assert_serves(context)
                    after = tree_digest(self.outside)
                    if after != self.before:
                        changed = sorted(k for k in set(after) | set(self.before) if after.get(k) != self.before.get(k))
                        failures.append(f"{context}: changed outside the pool: {changed}")
                        print(failures[-1], file=sys.stderr, flush=True)
                    if after != self.before:
                        self.make_outside()  # afresh for the next case
        self.assertEqual(failures, [], "\n".join(failures))

    def test_crafted_index_header_is_set_aside(self):
        """A dedup index whose header claims 16 TiB, with a valid checksum,
        once made the daemon run out of memory at the pool's first job,
        and again after every restart: it must be set aside, the job done
        and the pool served, across a restart too."""
        self.dir_path = self.pool_dir("crafted")
        index = self.path(".btrfs-vdo", "dedup.idx")
        os.makedirs(os.path.dirname(index))
        with open(index, "wb") as f:
            f.write(crafted_index_header(1 << 44))
        self.use_pool("crafted")
        vms = self.bounded("setting up the pool", lambda: self.world(NAMES[0]), 6 * OP_TIMEOUT)
        self.assert_serves("after the first job")
        self.assertTrue(os.path.exists(index + ".corrupt"), "the crafted index was not set aside")
        done = [j for j in json.loads(self.cli_run("jobs", "--json").stdout)["recent"]
                if j["dir_path"] == self.dir_path]
        self.assertTrue(done, "no job ran")
        self.assertEqual([j["error"] for j in done], [""] * len(done))
        self.daemon.stop()
        self.daemon.start()
        self.bounded("start", lambda: self.run_op("start", vms))
        self.bounded("stop", lambda: self.run_op("stop", vms))
        self.cli_run("jobs", "--wait")
        self.assert_serves("after a restart")
