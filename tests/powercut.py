# SPDX-License-Identifier: GPL-2.0-or-later
"""Power loss at every flush.

tests/test_crash.py kills the daemon between two steps; the page cache
survives, so it proves the order of the steps, not that they were made
durable. Here the pool's btrfs sits on a loop device over a FUSE disk
(tests/powercut-disk) whose write cache only a flush empties. For each
operation, a run without a cut counts the flushes it makes; then, for each
flush k, the operation runs again from the same baseline and the power
goes at flush k: the disk keeps what was flushed before (and, in subset
mode, a seeded random subset of the writes since). The filesystem is then
mounted again, a fresh daemon does what qubesd does after a crash (stop
every volume, then start and stop each VM), and every image and revision
must hold its content from before or after the operation: nothing else,
and never be missing when it was there before.

    python3 -m tests.powercut [--sample N] [--subsets N] [--seed S] [--op NAME]... [--state CUT[:SEED]]...

Needs root, bin/ built and build/powercut-disk (make powercut does both).
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import qubes.exc
import qubes.storage
from qubes.tests import fakes

from qubes_btrfs_vdo.pool import BtrfsVdoPool
from tests import harness

MiB = 1 << 20
DISK_SIZE = 384 * MiB
DISK_TOOL = os.environ.get(
    "POWERCUT_DISK",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "powercut-disk"),
)
ABSENT = "absent"
# Images, revisions (their @time dropped, see key()) and nothing else:
# precaches and dirty images are caches a start rebuilds.
TRACKED = re.compile(r"^(appvms|vm-templates)/[^/]+/(?![^/]*-(precache|dirty|import)\.img)[^/]+\.img(\.\d+)?$")


class Disk:
    """powercut-disk serving a store file, a loop device on it and the
    btrfs on that, mounted; the mount is the pool's filesystem."""

    def __init__(self, workdir, store, keep_seed=0):
        self.store, self.keep_seed = store, keep_seed
        self.fuse = os.path.join(workdir, "fuse")
        self.mnt = os.path.join(workdir, "mnt")
        self.control = os.path.join(workdir, "control.sock")
        self.proc = None
        os.makedirs(self.fuse, exist_ok=True)
        os.makedirs(self.mnt, exist_ok=True)

    @property
    def device(self):
        return os.path.join(self.fuse, "disk")

    def start(self, mkfs=False):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.control)
        size = ["-size", str(DISK_SIZE)] if mkfs else []
        self.proc = subprocess.Popen(
            [DISK_TOOL, "-store", self.store, *size, "-mount", self.fuse,
             "-control", self.control, "-keep-seed", str(self.keep_seed)],
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.device) and os.path.exists(self.control)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"powercut-disk did not start: {self.proc.communicate()[1]}")
            time.sleep(0.02)
        if mkfs:
            harness.run("mkfs.btrfs", "-q", "-K", "-f", self.device)
        # No discard: a discard is not a write the cache could drop.
        harness.run("mount", "-o", "loop,nodiscard", self.device, self.mnt)

    def ask(self, command):
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(self.control)
            conn.sendall(command.encode() + b"\n")
            reply = conn.makefile().readline().strip()
        if reply.startswith("error: "):
            raise RuntimeError(f"powercut-disk {command}: {reply}")
        return reply

    def status(self):
        return json.loads(self.ask("status"))

    def stop(self):
        """Unmount everything and end the disk process; what it did not
        persist is lost."""
        if os.path.ismount(self.mnt):
            if subprocess.run(["umount", self.mnt], capture_output=True).returncode != 0:
                harness.run("umount", "--lazy", self.mnt)
        # mount -o loop detaches the loop device asynchronously.
        deadline = time.monotonic() + 10
        while self.device in harness.run("losetup", "-n", "-O", "BACK-FILE", "-l").stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the loop device on {self.device} outlived the unmount")
            time.sleep(0.05)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                harness.run("umount", "--lazy", self.fuse)
                self.proc.wait(timeout=10)
        self.proc = None


def run_async(coro):
    return asyncio.run(coro)


class World:
    """The shim's pool and qubesd's fake VMs over the pool directory, as
    qubesd makes them when it starts."""

    def __init__(self, dir_path, qubes_dir, daemon, shapes=None):
        self.dir_path, self.qubes_dir, self.daemon = dir_path, qubes_dir, daemon
        self.pool = BtrfsVdoPool(name="vdo", dir_path=dir_path, revisions_to_keep="2")
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)
        self.vms = {}
        for name, cls, template, volumes in shapes or ():
            self.add_vm(name, cls, template, volumes)

    def shapes(self):
        """What reopens these VMs in a new World."""
        return [(name, type(vm), getattr(getattr(vm, "template", None), "name", None), vm.volume_config)
                for name, vm in self.vms.items()]

    def add_vm(self, name, cls, template=None, volumes=None, create=False):
        kwargs = {"template": self.vms[template]} if template else {}
        vm = cls(self.app, name, volume_config=volumes, base_dir=self.qubes_dir, **kwargs)
        os.makedirs(vm.dir_path, exist_ok=True)
        vm.init_storage()
        if create:
            run_async(vm.storage.create())
        self.vms[name] = vm
        return vm

    def cli(self, *args):
        return harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, *args).stdout

    def wait_jobs(self):
        self.cli("jobs", "--wait")

    def write(self, vm, volume, offset, data):
        """Write into a running volume as its VM would, and fsync."""
        harness.write_at(self.vms[vm].volumes[volume].block_device().path, offset, data)

    def cycle(self, name, *writes):
        """Start a VM, write (volume, offset, data) into it, stop it."""
        vm = self.vms[name]
        run_async(vm.storage.verify())
        run_async(vm.storage.start())
        for volume, offset, data in writes:
            self.write(name, volume, offset, data)
        run_async(vm.storage.stop())

    def revisions(self, vid):
        """The revision numbers of a volume, oldest first."""
        names = os.listdir(os.path.join(self.dir_path, os.path.dirname(vid)))
        prefix = os.path.basename(vid) + ".img."
        return sorted(int(n[len(prefix):].split("@")[0]) for n in names if n.startswith(prefix) and "@" in n)

    def digests(self):
        """key() -> digest of every image and revision of the pool."""
        out = {}
        for root, _, names in os.walk(self.dir_path):
            for name in names:
                path = os.path.join(root, name)
                k = key(os.path.relpath(path, self.dir_path))
                if TRACKED.match(k):
                    out[k] = harness.sha256(path)
        return out

    def leftovers(self, before):
        """Files an interrupted operation left, which the next start must
        have removed: those last changed before the time before. The
        restarted daemon's own writes (its usage figures, its state) may
        have a temp file for a moment; one it made anew is not left over."""
        found = []
        for root, _, names in os.walk(self.dir_path):
            found += [os.path.join(root, n) for n in names if "~" in n or n.endswith("-import.img")]
        tmp = os.path.join(self.dir_path, ".btrfs-vdo", "tmp")
        if os.path.isdir(tmp):
            found += [os.path.join(tmp, n) for n in os.listdir(tmp)]
        return [p for p in found if harness.changed_before(p, before)]


def key(relpath):
    """A revision's path without its time, which differs between runs."""
    return relpath.split("@", 1)[0]


def build_common(world):
    """A template, and an AppVM whose private has two revisions."""
    run_async(world.pool.setup())
    world.add_vm("fedora", fakes.FakeTemplateVM, volumes=fakes.TEMPLATE_VOLUMES, create=True)
    world.cycle("fedora", ("root", 0, harness.pattern("tpl", MiB)))
    world.add_vm("work", fakes.FakeVM, "fedora", fakes.APPVM_VOLUMES, create=True)
    world.cycle("work", ("private", 0, harness.pattern("P1", MiB)))
    world.cycle("work", ("private", MiB, harness.pattern("P2", MiB)))


# -- operations: arm builds the baseline's part, run is what the power cuts --


def arm_running(world):
    run_async(world.vms["work"].storage.start())
    world.write("work", "private", 0, harness.pattern("P3", 2 * MiB))


def run_commit(world):
    run_async(world.vms["work"].storage.stop())
    world.wait_jobs()


def run_revert(world):
    oldest = world.revisions("appvms/work/private")[0]
    run_async(world.vms["work"].storage.revert("private", str(oldest)))


def run_resize(world):
    work = world.vms["work"]
    run_async(work.storage.resize("private", work.volumes["private"].size + 64 * MiB))


def arm_import(world):
    path = run_async(world.vms["work"].storage.import_data("private", None))
    harness.write_at(path, 3 * MiB, harness.pattern("imported", MiB))


def run_import(world):
    run_async(world.vms["work"].storage.import_data_end("private", True))


def arm_clone(world):
    world.add_vm("clone", fakes.FakeVM, "fedora", fakes.APPVM_VOLUMES, create=True)


def run_clone(world):
    clone, work = world.vms["clone"], world.vms["work"]
    run_async(clone.storage.import_volume(clone.volumes["private"], work.volumes["private"]))


def run_remove(world):
    run_async(world.vms["work"].storage.remove())


def arm_optimize(world):
    """A VM's first run writes text that compresses and a copy of the
    template's root, which dedup finds in the pool's index."""
    world.add_vm("text", fakes.FakeVM, "fedora", fakes.APPVM_VOLUMES, create=True)
    run_async(world.vms["text"].storage.start())
    world.write("text", "private", 0, harness.compressible("text", 8 * MiB))
    world.write("text", "private", 16 * MiB, harness.pattern("tpl", MiB))


def run_optimize(world):
    run_async(world.vms["text"].storage.stop())
    world.wait_jobs()
    require_savings(world)


def arm_legacy(world):
    """A volume as another driver left it after two commits: image,
    precache and two revisions, all uncompressed; the revisions share
    extents the image does not hold, which a full pass compresses through
    a copy deduplicated into both."""
    vdir = os.path.join(world.dir_path, "appvms", "old")
    os.makedirs(vdir)
    img, first, second = (os.path.join(vdir, name) for name in (
        "private.img", "private.img.1@2025-01-01T00:00:00Z", "private.img.2@2025-01-02T00:00:00Z"))
    for path, seed in ((img, "old"), (first, "older")):
        with open(path, "wb") as f:
            f.truncate(64 * MiB)
            f.write(harness.numbered_text(seed, 8 * MiB))
    os.utime(first, (1735689600, 1735689600))
    harness.run("cp", "--reflink=always", "--preserve=timestamps", first, second)
    harness.run("cp", "--reflink=always", "--preserve=timestamps", img, os.path.join(vdir, "private-precache.img"))
    world.add_vm("old", fakes.FakeVM, "fedora", fakes.APPVM_VOLUMES)


def run_optimize_full(world):
    world.cli("optimize", "--full", f"{world.dir_path}:appvms/old/private")
    require_savings(world)


def require_savings(world):
    """The optimizer did its work: else its crash states would prove
    nothing about it."""
    jobs = json.loads(world.cli("jobs", "--json"))
    errors = [j["error"] for j in jobs["recent"] if j["error"]]
    if errors or jobs["counters"]["job_bytes_saved"] <= 0:
        raise RuntimeError(f"the optimizer saved {jobs['counters']['job_bytes_saved']} bytes, errors: {errors}")


OPERATIONS = {
    "commit": (arm_running, run_commit),
    "revert": (None, run_revert),
    "resize": (None, run_resize),
    "import": (arm_import, run_import),
    "clone": (arm_clone, run_clone),
    "remove": (None, run_remove),
    "optimize": (arm_optimize, run_optimize),
    "optimize-full": (arm_legacy, run_optimize_full),
}


# -- checks --------------------------------------------------------------------


def vid_of(k):
    return k.split(".img", 1)[0]


def contents(digests, vid):
    return {d for k, d in digests.items() if vid_of(k) == vid}


def describe(digest, before, after):
    """Says which file held these bytes, before or after the operation."""
    if digest == ABSENT:
        return ABSENT
    for when, digests in (("before", before), ("after", after)):
        for k, d in sorted(digests.items()):
            if d == digest:
                return f"what {k} held {when}"
    return f"unknown data ({digest[:12]})"


def compare(before, after, now, stage):
    """Every file holds its content from before or after the operation,
    and no volume loses content it held both before and after."""
    failures, known = [], set(before.values()) | set(after.values())
    for k in sorted(set(before) | set(after) | set(now)):
        got = now.get(k, ABSENT)
        if k in before or k in after:
            allowed = {before.get(k, ABSENT), after.get(k, ABSENT)}
            if got not in allowed:
                failures.append(f"{k} {stage}: holds {describe(got, before, after)}, not "
                                + " or ".join(sorted(describe(a, before, after) for a in allowed)))
        elif got not in known:
            failures.append(f"{k} {stage}: a new file holding {describe(got, before, after)}")
    for vid in sorted({vid_of(k) for k in set(before) | set(after)}):
        for lost in contents(before, vid) & contents(after, vid) - contents(now, vid):
            failures.append(f"{vid} {stage}: no file holds any more {describe(lost, before, after)}")
    return failures


def compare_after_cycle(settled, now, known):
    """A start and a stop change no image, and revisions hold only data
    the pool held before."""
    failures = []
    for k in sorted(set(settled) | set(now)):
        is_image = k.endswith(".img")
        if is_image and now.get(k, ABSENT) != settled.get(k, ABSENT):
            failures.append(f"{k} changed in a start and a stop after the recovery")
        elif not is_image and k in now and now[k] not in known:
            failures.append(f"{k} holds unknown data after a start and a stop")
    return failures


# -- runs ----------------------------------------------------------------------


class PowerCut:
    """Builds each operation's baseline once and runs crash states from it."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.store = os.path.join(workdir, "store.img")
        self.qubes_dir = os.path.join(workdir, "var-lib-qubes")
        # One daemon, started afresh on each mount (harness.Daemon starts
        # it at once: there is no pool yet, so it only listens).
        self.daemon = harness.Daemon()
        self.daemon.kill()
        qubes.storage.VOLUME_STATE_DIR = os.path.join(workdir, "volume-state")
        os.makedirs(qubes.storage.VOLUME_STATE_DIR, exist_ok=True)

    def close(self):
        self.daemon.close()

    @property
    def dir_path(self):
        return os.path.join(self.workdir, "mnt", "pool")

    @contextlib.contextmanager
    def mounted(self, keep_seed=0, mkfs=False):
        """The disk mounted and a fresh daemon serving; afterwards both are
        gone, the daemon SIGKILLed, and the disk lost what it did not
        persist."""
        disk = Disk(self.workdir, self.store, keep_seed)
        try:
            disk.start(mkfs=mkfs)
            self.daemon.start()
            yield disk
        finally:
            if self.daemon.proc.poll() is None:
                self.daemon.kill()
            disk.stop()

    def build_baseline(self, name, arm):
        """The common world plus what the operation needs, flushed; returns
        the baseline store file, the VMs' shapes and the pool's digests."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.store)
        with self.mounted(mkfs=True) as disk:
            world = World(self.dir_path, self.qubes_dir, self.daemon)
            build_common(world)
            if arm:
                arm(world)
            world.wait_jobs()
            shapes, before = world.shapes(), world.digests()
            self.daemon.stop()  # then the unmount flushes everything
        baseline = os.path.join(self.workdir, f"baseline-{name}.img")
        harness.run("cp", "--sparse=always", self.store, baseline)
        return baseline, shapes, before

    def crash(self, baseline, shapes, operation, cut, keep_seed):
        """One crash state: the operation with the power cut at flush cut
        (None: after it returned). Returns the flushes it made, the
        digests of its live result, the disk's status and the error the
        operation failed with, if any: the disk works on after a cut, so
        nothing above it should notice."""
        harness.run("cp", "--sparse=always", baseline, self.store)
        with self.mounted(keep_seed) as disk:
            world = World(self.dir_path, self.qubes_dir, self.daemon, shapes)
            if cut:
                disk.ask(f"cut-at {cut}")
            start = disk.status()["flushes"]
            error = None
            try:
                operation(world)
            except (qubes.exc.StoragePoolException, RuntimeError) as exc:
                error = f"the operation failed: {exc}\n{self.daemon.log()[-3000:]}"
            live = world.digests()
            disk.ask("cut")
            status = disk.status()
        return status["flushes"] - start, live, status, error

    def recover(self, shapes, before, after, removed):
        """After the power comes back: what qubesd does at its start, then
        a start and a stop of every VM. Returns the digests after qubesd's
        stop() and the failures found."""
        powered_up = time.time()
        with self.mounted():
            world = World(self.dir_path, self.qubes_dir, self.daemon, shapes)
            try:
                settled, failures = settle(world, before, after)
                failures += cycle_all(world, settled, removed, set(before.values()) | set(after.values()), powered_up)
                json.loads(world.cli("status", "--json"))
            except (qubes.exc.StoragePoolException, RuntimeError) as exc:
                return {}, [f"recovery failed: {exc}\n{self.daemon.log()[-3000:]}"]
        return settled, failures


def settle(world, before, after):
    """qubesd's start: new objects stop() every volume, which commits what
    a running VM left. Returns the digests then, and the failures."""
    powered_up = world.digests()
    for vm in world.vms.values():
        run_async(vm.storage.stop())
    world.wait_jobs()
    settled = world.digests()
    failures = compare(before, after, settled, "after qubesd's stop()")
    if failures:
        failures.append("at power-up, " + "; ".join(
            f"{k}: {describe(d, before, after)}" for k, d in sorted(powered_up.items())
            if any(vid_of(k) in f for f in failures)))
    return settled, failures + job_errors(world)


def cycle_all(world, settled, removed, known, powered_up):
    """Every VM starts and stops again (a removed one is removed again, as
    the user would after a failed qvm-remove); this changes no image, and
    leaves nothing the power cut left (see World.leftovers)."""
    if removed:
        vm = world.vms.pop(removed)
        if os.path.exists(os.path.join(world.dir_path, "appvms", removed)):
            run_async(vm.storage.remove())
        settled = {k: d for k, d in settled.items() if not k.startswith(f"appvms/{removed}/")}
    for vm in world.vms.values():
        run_async(vm.storage.verify())
        run_async(vm.storage.start())
    for vm in world.vms.values():
        run_async(vm.storage.stop())
    world.wait_jobs()
    failures = compare_after_cycle(settled, world.digests(), known)
    return failures + [f"{p} outlived the next start" for p in world.leftovers(before=powered_up)]


def job_errors(world):
    jobs = json.loads(world.cli("jobs", "--json"))
    failures = [f"job left after jobs --wait: {j}" for j in jobs["jobs"]]
    return failures + [f"job {j['vid']} failed: {j['error']}" for j in jobs["recent"] if j["error"]]


# -- the whole run ---------------------------------------------------------------


class Report:
    def __init__(self):
        self.failures = []
        self.lines = []

    def fail(self, op, state, messages):
        for message in messages:
            self.failures.append(f"{op}, {state}: {message}")
            print(f"FAIL {op}, {state}: {message}", file=sys.stderr)


def check_operation(pc, name, report, pick):
    """Checks the crash states of one operation that pick chooses as
    (cut, keep_seed) pairs, and the one after it returned."""
    arm, operation = OPERATIONS[name]
    started = time.monotonic()
    baseline, shapes, before = pc.build_baseline(name, arm)
    removed = "work" if name == "remove" else None
    # The reference run: the power goes only after the operation returned,
    # when all it did must have been durable.
    flushes, after, _, error = pc.crash(baseline, shapes, operation, None, 0)
    if error:
        raise RuntimeError(f"{name} without a power cut: {error}")
    settled, failures = pc.recover(shapes, before, after, removed)
    report.fail(name, "power cut after it returned", failures)
    if not failures and settled != after:
        report.fail(name, "power cut after it returned", [
            f"{k}: holds {describe(settled.get(k, ABSENT), before, after)}, though the operation "
            f"returned holding {describe(after.get(k, ABSENT), before, after)}"
            for k in sorted(set(after) | set(settled)) if settled.get(k, ABSENT) != after.get(k, ABSENT)])
    states, kept, pending = pick(name, flushes), 0, 0
    for cut, seed in states:
        state = f"cut at flush {cut} of {flushes}" + (f", keeping a subset (state {cut}:{seed})" if seed else "")
        made, _, status, error = pc.crash(baseline, shapes, operation, cut, seed)
        report.fail(name, state, [error] if error else [])
        if seed:
            kept, pending = kept + status["kept"], pending + status["pending"]
        if made < cut:  # the flushes an operation makes vary a little
            print(f"note {name}, {state}: this run made only {made} flushes", file=sys.stderr)
        _, failures = pc.recover(shapes, before, after, removed)
        report.fail(name, state, failures)
    os.unlink(baseline)
    line = (f"{name}: {flushes} flushes; {len(states) + 1} crash states checked "
            f"({sum(1 for _, s in states if s)} with a kept subset; those kept {kept} of {pending} "
            f"unflushed writes) in {time.monotonic() - started:.0f} s")
    report.lines.append(line)
    print(line, file=sys.stderr)


def picker(args):
    rng = random.Random(args.seed)

    def every(name, flushes):
        states = [(k, 0) for k in range(1, flushes + 1)]
        states += [(k, rng.randrange(1, 1 << 31)) for k in range(1, flushes + 1) for _ in range(args.subsets)]
        return states

    def sample(name, flushes):
        candidates = every(name, flushes)
        return rng.sample(candidates, min(args.sample, len(candidates)))

    if args.state:
        return lambda name, flushes: args.state
    return sample if args.sample else every


def cut_and_seed(text):
    """CUT[:SEED], as a failure names a crash state."""
    cut, _, seed = text.partition(":")
    return int(cut), int(seed or 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=0, help="check N random crash states per operation, not all")
    parser.add_argument("--subsets", type=int, default=1,
                        help="at each flush, also this many cuts that keep a random subset of the unflushed writes")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seeds the sample and the subsets")
    parser.add_argument("--op", action="append", choices=sorted(OPERATIONS), help="only these operations")
    parser.add_argument("--state", action="append", type=cut_and_seed, metavar="CUT[:SEED]",
                        help="check only this crash state, as a failure names it")
    args = parser.parse_args()
    print(f"powercut: seed {args.seed}", file=sys.stderr)
    os.environ.pop("BTRFS_VDO_SOCKET", None)
    workdir = tempfile.mkdtemp(prefix=harness.PREFIX + "powercut-", dir="/var/tmp")
    pc, report, started = None, Report(), time.monotonic()
    try:
        pc = PowerCut(workdir)
        os.environ["BTRFS_VDO_SOCKET"] = pc.daemon.socket
        for name in args.op or OPERATIONS:
            check_operation(pc, name, report, picker(args))
    finally:
        if pc:
            pc.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(report.lines + [f"total {time.monotonic() - started:.0f} s, seed {args.seed}, "
                                    f"{len(report.failures)} failures"]))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
