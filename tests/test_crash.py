# SPDX-License-Identifier: GPL-2.0-or-later
"""Crash at every failpoint: the daemon is SIGKILLed between two steps of
an operation (internal/failpoint), restarted, and driven through what
qubesd runs after a crash; every image must then hold its old or its new
content, never a mix and never nothing, revisions must be intact, no temp
file may outlive the next start, and interrupted optimizer jobs must
resume and finish. Every revision present must hold one of the states
committed before, in the order they were committed, and none of the
revisions_to_keep newest before the image may be missing.

The crash is the daemon's death, not a power loss: the page cache
survives, so what this proves is the order of the steps, not fsync."""

import contextlib
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import qubes.exc
from qubes.tests import fakes

from tests import harness
from tests.base import MiB, IntegrationCase, quiet

FAILPOINT_ENV = "BTRFS_VDO_FAILPOINT"
NAMES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "internal", "failpoint", "names.txt")
ABSENT = "absent"
KEEP = 2  # the pool's revisions_to_keep
# How long a background job may take to reach its failpoint.
DEATH_TIMEOUT = 120


def registered_failpoints():
    with open(NAMES_FILE, encoding="ascii") as f:
        return sorted(f.read().split())


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A crash: what is set up first (arm), what runs in the daemon that
    dies (op), and at which failpoint."""

    failpoint: str
    arm: str
    op: str
    # The state directory is made immutable, so the commit cannot queue a
    # job and makes the precache itself.
    frozen_state: bool = False


COMMIT_STEPS = ("after-revision", "after-prune", "after-fsync", "after-precache-removal", "after-rename")
# The three operations that commit: a shutdown, a finished import, a clone.
COMMITTERS = (("running", "stop"), ("import", "import_data_end"), ("clone", "import_volume"))

SCENARIOS = [
    *(Scenario("commit." + step, arm, op) for step in COMMIT_STEPS for arm, op in COMMITTERS),
    *(Scenario("commit.after-precache-copy", arm, op, frozen_state=True) for arm, op in COMMITTERS),
    *(Scenario("revert." + step, "halted", "revert")
      for step in ("after-revision", "after-precache-removal", "after-rename", "after-precache-copy")),
    Scenario("import-volume.after-copy", "clone", "import_volume"),
    Scenario("import-volume.before-commit", "clone", "import_volume"),
    Scenario("resize.stopped-after-reflink", "halted", "resize"),
    Scenario("resize.running-after-truncate", "running", "resize"),
    Scenario("remove.after-revisions", "halted", "remove"),
    Scenario("remove.after-files", "halted", "remove"),
    Scenario("start.after-precache-check", "halted", "start"),
    Scenario("start.after-dirty", "halted", "start"),
    Scenario("start.after-dirty", "no-precache", "start"),
    Scenario("start.after-snapshot-link", "halted", "start"),
    Scenario("optimize.after-plan", "compressible", "stop"),
    Scenario("optimize.between-chunks", "legacy-revisions", "optimize"),
    Scenario("optimize.before-precache", "compressible", "stop"),
    Scenario("optimize.after-compressed-copy", "legacy-revisions", "optimize"),
    Scenario("optimize.after-dedupe", "legacy-revisions", "optimize"),
    Scenario("dedup.after-rewrite-copy", "legacy-repeats", "optimize"),
    Scenario("dedup.after-take-apart", "legacy-repeats", "optimize"),
    Scenario("state.after-temp-write", "running", "stop"),
    Scenario("state.after-rename", "running", "stop"),
]


@dataclasses.dataclass
class World:
    """The VMs of one scenario's pool, and what each origin image may hold
    after the crash (vid -> set of digests, ABSENT for no image)."""

    vms: dict
    allowed: dict = dataclasses.field(default_factory=dict)
    target: str = "work"  # the VM the operation is for
    # vid -> the histories the volume may have after the operation: lists
    # of the states it held, oldest first, the image's state last.
    histories: dict = dataclasses.field(default_factory=dict)
    removing: bool = False  # the operation removes volumes and their revisions

    def created(self, vid, digest):
        self.histories[vid] = [[digest]]

    def committed(self, vid, digest):
        for history in self.histories[vid]:
            history.append(digest)

    def may_become(self, vid, history):
        """The operation may leave vid with this history instead."""
        self.histories[vid].append(history)

    def now(self, vid):
        return self.histories[vid][0]


class Crash(IntegrationCase):
    def test_crash_at_every_failpoint(self):
        covered = set()
        started = time.monotonic()
        for number, scenario in enumerate(SCENARIOS):
            with self.subTest(failpoint=scenario.failpoint, arm=scenario.arm, op=scenario.op):
                self.crash(number, scenario)
                covered.add(scenario.failpoint)
        print(f"\ncrash test: {len(covered)} of {len(registered_failpoints())} failpoints covered "
              f"by {len(SCENARIOS)} crashes in {time.monotonic() - started:.0f} s", file=sys.stderr)
        self.assertEqual(sorted(covered), registered_failpoints())

    def crash(self, number, scenario):
        self.use_pool(f"{number:02d}-{scenario.failpoint}-{scenario.arm}", revisions_to_keep=str(KEEP))
        world = self.build_world()
        getattr(self, "arm_" + scenario.arm.replace("-", "_"))(world)
        self.cli("jobs", "--wait")
        before = self.image_digests()
        for vid in self.origin_vids(world):
            world.allowed.setdefault(vid, {before.get(self.clean(vid), ABSENT)})

        self.daemon.stop()
        state_dir = self.path(".btrfs-vdo")
        if scenario.frozen_state:
            harness.run("chattr", "+i", state_dir)
        log_start = len(self.daemon.log())
        self.daemon.env = {FAILPOINT_ENV: scenario.failpoint}
        try:
            self.daemon.start()
            with quiet(), contextlib.suppress(qubes.exc.StoragePoolException):
                getattr(self, "op_" + scenario.op)(world)
            self.assert_killed_at(scenario.failpoint, log_start)
        finally:
            self.daemon.env = {}
            if self.daemon.proc.poll() is None:
                self.daemon.kill()
            if scenario.frozen_state:
                harness.run("chattr", "-i", state_dir)
            # Before the start: what the restarted daemon writes while it
            # starts (its usage figures, its state) is not a leftover.
            restarted = time.time()
            self.daemon.start()
        self.recover(world, scenario, before, restarted)

    def assert_killed_at(self, failpoint, log_start):
        try:
            code = self.daemon.proc.wait(timeout=DEATH_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        self.assertEqual(code, -signal.SIGKILL, f"the daemon did not die at {failpoint}")
        self.assertIn(f"failpoint {failpoint}: killing the process", self.daemon.log()[log_start:])

    # -- what qubesd does after a crash ------------------------------------

    def recover(self, world, scenario, before, restarted):
        """qubesd starts with new objects and stop()s every halted VM's
        volumes; then each VM starts and shuts down again. restarted is
        when the daemon started again."""
        vms = self.reload(world)
        for vm in vms.values():
            self.run_async(vm.storage.stop())
        self.cli("jobs", "--wait")
        jobs = json.loads(self.cli("jobs", "--json"))
        self.assertEqual(jobs["jobs"], [], "an interrupted job did not finish")
        self.assertEqual([j["error"] for j in jobs["recent"] if j["error"]], [])
        if scenario.failpoint.startswith("optimize."):
            self.assertIn(f"appvms/{world.target}/private", [j["vid"] for j in jobs["recent"]],
                          "the interrupted job did not resume")
        self.check_images(world, before, "after stop()")

        if scenario.op == "remove":
            # qvm-remove failed: the user runs it again.
            self.run_async(vms.pop("work").storage.remove())
            self.assertFalse(os.path.exists(self.path("appvms", "work")))
            for vid in [v for v in world.allowed if v.startswith("appvms/work/")]:
                del world.allowed[vid]
                del world.histories[vid]
            world.removing = False
        for vm in vms.values():
            self.start(vm)
        self.assertEqual(self.leftovers(before=restarted), [], "temp files outlived the next start")
        for vid in world.allowed:
            self.assertEqual(harness.sha256(self.path(vid + "-dirty.img")), harness.sha256(self.clean(vid)),
                             f"{vid} started with other data than it holds")
        for vm in vms.values():
            self.stop(vm)
            self.note_commit(world, vm)
        self.cli("jobs", "--wait")
        self.assertEqual(json.loads(self.cli("jobs", "--json"))["jobs"], [])
        self.check_images(world, before, "after a start and a stop", precache=True)

    def check_images(self, world, before, stage, precache=False):
        now = self.image_digests()
        known = set(before.values()).union(*world.allowed.values())
        for vid, allowed in world.allowed.items():
            self.assertIn(now.get(self.clean(vid), ABSENT), allowed, f"{vid} {stage}")
        for name, digest in now.items():
            if ".img." in name:
                if name in before:
                    self.assertEqual(digest, before[name], f"revision {name} changed {stage}")
                self.assertIn(digest, known, f"revision {name} holds unknown data {stage}")
        for vid in world.allowed:
            pre, clean = self.path(vid + "-precache.img"), self.clean(vid)
            if precache:
                self.assertTrue(os.path.exists(pre), f"{vid} has no precache {stage}")
            if os.path.exists(pre) and os.path.exists(clean) and same_stat(pre, clean):
                self.assertEqual(now[pre], now[clean], f"{vid}: a usable precache differs from the image {stage}")
        for vid in world.histories:
            self.check_revisions(world, vid, now, stage)

    def check_revisions(self, world, vid, now, stage):
        """The revisions of vid are states it held, in order, and include
        the KEEP states before its image (unless it is being removed),
        under one of the histories the operation may have left."""
        image = now.get(self.clean(vid), ABSENT)
        revisions = [now[path] for path in self.revision_files(vid)]
        candidates = [h for h in world.histories[vid] if h[-1] == image]
        self.assertTrue(candidates or world.removing,
                        f"{vid} {stage}: image {image[:12]} is no state it may hold")
        failures = []
        for history in candidates:
            problem = revisions_problem(revisions, history, None if world.removing else KEEP)
            if problem is None:
                return
            failures.append(problem)
        if candidates:
            self.fail(f"{vid} {stage}: {'; '.join(failures)}")

    def revision_files(self, vid):
        """Every file of vid's revision glob, by revision number; numbers
        that are no decimal sort first."""
        directory, volume = os.path.split(self.path(vid))
        found = []
        for name in os.listdir(directory):
            match = re.fullmatch(re.escape(volume) + r"\.img\.(.+)@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", name)
            if match:
                number = match.group(1)
                found.append((int(number) if number.isdigit() else -1, os.path.join(directory, name)))
        return [path for _, path in sorted(found)]

    # -- worlds -------------------------------------------------------------

    def build_world(self):
        """A template and an AppVM whose private has two commits, so it
        has two revisions, and no job pending."""
        world = World(vms={})
        tpl = self.make_template()
        self.note_created(world, tpl)
        self.start(tpl)
        self.write_volume(tpl, "root", 0, harness.pattern("tpl", MiB))
        self.stop(tpl)
        self.note_commit(world, tpl)
        work = self.make_appvm("work", tpl)
        self.note_created(world, work)
        for offset, seed in ((0, "P1"), (MiB, "P2")):
            self.start(work)
            self.write_volume(work, "private", offset, harness.pattern(seed, MiB))
            self.stop(work)
            self.note_commit(world, work)
        self.cli("jobs", "--wait")
        return world

    def origin_vids_of(self, vm):
        return [f"{vm.dir_path_prefix}/{vm.name}/{name}" for name, vol in vm.volumes.items() if vol.save_on_stop]

    def note_created(self, world, vm):
        world.vms[vm.name] = vm
        for vid in self.origin_vids_of(vm):
            world.created(vid, harness.sha256(self.clean(vid)))

    def note_commit(self, world, vm):
        """vm has stopped: each of its origin volumes committed its state."""
        for vid in self.origin_vids_of(vm):
            if vid in world.histories:
                world.committed(vid, harness.sha256(self.clean(vid)))

    def reload(self, world):
        """New pool and VM objects for the same files, as qubesd makes at
        its start."""
        self.pool = self.make_pool(revisions_to_keep=str(KEEP))
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)
        vms = {}
        for name, old in world.vms.items():
            template = vms.get(getattr(getattr(old, "template", None), "name", None))
            kwargs = {"template": template} if template else {}
            vm = type(old)(self.app, name, volume_config=old.volume_config, base_dir=self.qubes_dir, **kwargs)
            vm.init_storage()
            vms[name] = vm
        return vms

    def arm_halted(self, world):
        pass

    def arm_running(self, world):
        work = world.vms["work"]
        self.start(work)
        self.write_volume(work, "private", 0, harness.pattern("P3", 2 * MiB))
        self.write_volume(work, "root", 0, harness.pattern("root scratch", MiB))
        dirty = harness.sha256(self.path("appvms", "work", "private-dirty.img"))
        world.allowed["appvms/work/private"] = {dirty}
        world.may_become("appvms/work/private", world.now("appvms/work/private") + [dirty])

    def arm_compressible(self, world):
        """A VM's first run writes three chunks of compressible data: its
        directory has no compression property yet, so the data lands
        uncompressed and the optimizer has it all to do."""
        vm = self.make_appvm("text", world.vms["fedora"])
        self.note_created(world, vm)
        world.target = "text"
        self.start(vm)
        self.write_volume(vm, "private", 0, harness.compressible("P3", 24 * MiB))
        dirty = harness.sha256(self.path("appvms", "text", "private-dirty.img"))
        world.allowed["appvms/text/private"] = {dirty}
        world.may_become("appvms/text/private", world.now("appvms/text/private") + [dirty])

    def arm_no_precache(self, world):
        os.remove(self.path("appvms", "work", "private-precache.img"))

    def arm_import(self, world):
        path = self.run_async(world.vms["work"].storage.import_data("private", None))
        harness.write_at(path, 3 * MiB, harness.pattern("imported", MiB))
        imported = harness.sha256(path)
        world.allowed["appvms/work/private"] = {harness.sha256(self.clean("appvms/work/private")), imported}
        world.may_become("appvms/work/private", world.now("appvms/work/private") + [imported])

    def arm_clone(self, world):
        self.note_created(world, self.make_appvm("clone", world.vms["fedora"]))
        source = harness.sha256(self.clean("appvms/work/private"))
        world.allowed["appvms/clone/private"] = {harness.sha256(self.clean("appvms/clone/private")), source}
        world.may_become("appvms/clone/private", world.now("appvms/clone/private") + [source])

    def arm_legacy(self, world, data=None):
        """A volume as another driver left it: image, revision and precache
        sharing uncompressed extents of distinct blocks, which the dedup
        stage rewrites compressed into all three at once."""
        vdir = self.path("appvms", "old")
        os.makedirs(vdir)
        img = os.path.join(vdir, "private.img")
        with open(img, "wb") as f:
            f.truncate(64 * MiB)
            f.write(data or harness.numbered_text("old", 16 * MiB))
        for name in ("private.img.1@2025-01-01T00:00:00Z", "private-precache.img"):
            harness.run("cp", "--reflink=always", "--preserve=timestamps", img, os.path.join(vdir, name))
        old = fakes.FakeVM(self.app, "old", template=world.vms["fedora"], volume_config=fakes.APPVM_VOLUMES,
                           base_dir=self.qubes_dir)
        os.makedirs(old.dir_path, exist_ok=True)
        old.init_storage()
        world.vms["old"] = old
        world.target = "old"
        self.note_legacy(world)

    def note_legacy(self, world):
        """The legacy volume's history: its revisions, then its image."""
        states = [harness.sha256(path) for path in self.revision_files("appvms/old/private")]
        world.histories["appvms/old/private"] = [states + [harness.sha256(self.clean("appvms/old/private"))]]

    def arm_legacy_revisions(self, world):
        """A volume as another driver left it after two commits: its two
        revisions share uncompressed extents the image does not hold. The
        dedup stage takes the image; a full pass gives the revisions to the
        compression stage, which compresses their shared extents through a
        copy deduplicated into both."""
        self.arm_legacy(world)
        vdir = self.path("appvms", "old")
        first, second = (os.path.join(vdir, f"private.img.{n}@2025-01-0{n}T00:00:00Z") for n in (1, 2))
        os.remove(first)
        with open(first, "wb") as f:
            f.truncate(64 * MiB)
            f.write(harness.numbered_text("older", 16 * MiB))
        os.utime(first, (1735689600, 1735689600))
        harness.run("cp", "--reflink=always", "--preserve=timestamps", first, second)
        self.note_legacy(world)

    def arm_legacy_repeats(self, world):
        """The same, holding blocks repeated within it: the dedup stage
        takes those extents apart, rewriting what does not repeat."""
        self.arm_legacy(world, harness.compressible("old", 16 * MiB))

    # -- operations that meet the failpoint ---------------------------------

    def op_stop(self, world):
        self.run_async(world.vms[world.target].storage.stop())

    def op_start(self, world):
        # A start killed after it made the dirty image leaves it for the
        # next stop to commit: the same state once more.
        vid = "appvms/work/private"
        world.may_become(vid, world.now(vid) + [world.now(vid)[-1]])
        self.run_async(world.vms["work"].storage.start())

    def op_import_data_end(self, world):
        self.run_async(world.vms["work"].storage.import_data_end("private", True))

    def op_import_volume(self, world):
        clone, work = world.vms["clone"], world.vms["work"]
        self.run_async(clone.storage.import_volume(clone.volumes["private"], work.volumes["private"]))

    def op_revert(self, world):
        vid = "appvms/work/private"
        target = harness.sha256(glob.glob(self.path("appvms/work/private.img.2@*"))[0])
        world.allowed[vid].add(target)
        # The image becomes the newest revision, revision 2 the image.
        history = world.now(vid)
        revisions = [harness.sha256(p) for p in self.revision_files(vid)]
        revisions.remove(target)
        world.may_become(vid, revisions + [history[-1], target])
        self.run_async(world.vms["work"].storage.revert("private", "2"))

    def op_remove(self, world):
        world.allowed["appvms/work/private"].add(ABSENT)
        world.removing = True
        self.run_async(world.vms["work"].storage.remove())

    def op_optimize(self, world):
        self.cli("optimize", "--full", "--no-wait", f"{self.dir_path}:appvms/{world.target}/private")

    def op_resize(self, world):
        work = world.vms["work"]
        size = work.volumes["private"].size + 64 * MiB
        image = self.path("appvms", "work", "private-dirty.img" if work.running else "private.img")
        # The image at either size is a complete state; find the new one's
        # digest on a reflinked copy.
        scratch = os.path.join(self.fs.mnt, "scratch.img")
        harness.run("cp", "--reflink=always", image, scratch)
        os.truncate(scratch, size)
        world.allowed["appvms/work/private"] = {harness.sha256(image), harness.sha256(scratch)}
        resized = harness.sha256(scratch)
        os.remove(scratch)
        vid = "appvms/work/private"
        # Stopped, the image is replaced; running, the dirty image is
        # what the next stop commits, at either size.
        history = world.now(vid)
        world.may_become(vid, history + [resized] if work.running else history[:-1] + [resized])
        self.run_async(work.storage.resize("private", size))

    # -- files --------------------------------------------------------------

    def cli(self, *args):
        return harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, *args).stdout

    def clean(self, vid):
        return self.path(vid + ".img")

    def origin_vids(self, world):
        return sorted(f"{vm.dir_path_prefix}/{vm.name}/{name}"
                      for vm in world.vms.values() for name, vol in vm.volumes.items() if vol.save_on_stop)

    def image_digests(self):
        """Digest of every volume file of the pool, by absolute path."""
        return {p: harness.sha256(p) for p in glob.glob(self.path("*", "*", "*.img*")) if "~" not in p}

    def leftovers(self, before):
        """Files an interrupted write left: temp files, unfinished imports,
        the optimizer's copies, last changed before the time before. The
        restarted daemon's own writes (its usage figures, its state) may
        have a temp file for a moment; one it made anew is not left over."""
        found = []
        for root, _, names in os.walk(self.dir_path):
            found += [os.path.join(root, n) for n in names if "~" in n or n.endswith("-import.img")]
        found += glob.glob(self.path(".btrfs-vdo", "tmp", "*"))
        return [p for p in found if harness.changed_before(p, before)]


def revisions_problem(revisions, history, keep):
    """What is wrong with revisions (digests, oldest first) under history
    (the states held, the image's last), or None. A commit or revert killed
    after saving the image as a revision leaves one revision too many, a
    copy of the image, as the newest."""
    position = 0
    for digest in revisions:
        try:
            position = history.index(digest, position) + 1
        except ValueError:
            return f"revisions {short(revisions)} are not states of {short(history)} in order"
    if keep is None:
        return None
    kept = history[max(len(history) - 1 - keep, 0):-1]
    trimmed = revisions[:-1] if revisions and revisions[-1] == history[-1] else revisions
    if kept and revisions[-len(kept):] != kept and trimmed[-len(kept):] != kept:
        return f"revisions {short(revisions)} lack one of {short(kept)}, kept from {short(history)}"
    return None


def short(digests):
    return [d[:8] for d in digests]


def same_stat(a, b):
    """Whether start would take precache a for image b."""
    sa, sb = os.stat(a), os.stat(b)
    return sa.st_mtime_ns == sb.st_mtime_ns and sa.st_size == sb.st_size
