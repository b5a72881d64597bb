# SPDX-License-Identifier: GPL-2.0-or-later
"""qubesd's lifecycle sequences (contract §5) through the shim and the real
daemon, judged by the bytes a VM reads back."""

import glob
import os
import re
import subprocess

import qubes.exc
from qubes.tests import fakes

from tests import harness
from tests.base import MiB, IntegrationCase


class TemplateAndAppVM(IntegrationCase):
    def test_template_commit_survives_restart(self):
        tpl = self.make_template()
        self.start(tpl)
        data = harness.pattern("root-1", 4 * MiB)
        self.write_volume(tpl, "root", 0, data)
        self.stop(tpl)
        self.assertFalse(tpl.volumes["root"].is_dirty())
        self.assertEqual(list(tpl.volumes["root"].revisions), ["1"])
        self.start(tpl)
        self.assertEqual(self.read_volume(tpl, "root", 0, len(data)), data)
        self.stop(tpl)

    def test_appvm_root_snapshots_committed_template(self):
        tpl = self.make_template()
        self.start(tpl)
        committed = harness.pattern("committed", 2 * MiB)
        self.write_volume(tpl, "root", 0, committed)
        self.stop(tpl)

        # The template runs again with unsaved changes: an AppVM started now
        # must see the committed root.
        self.start(tpl)
        self.write_volume(tpl, "root", 0, harness.pattern("uncommitted", 2 * MiB))
        work = self.make_appvm("work", tpl)
        self.start(work)
        self.assertEqual(self.read_volume(work, "root", 0, 2 * MiB), committed)
        self.assertFalse(work.volumes["root"].is_outdated())

        private = harness.pattern("private", 3 * MiB)
        self.write_volume(work, "private", MiB, private)
        self.write_volume(work, "root", 0, b"x" * 4096)  # discarded at stop
        self.stop(tpl)
        self.assertTrue(work.volumes["root"].is_outdated(), "template commit not noticed")
        self.stop(work)

        self.start(work)
        self.assertEqual(self.read_volume(work, "private", MiB, len(private)), private)
        self.assertNotEqual(self.read_volume(work, "root", 0, 4096), b"x" * 4096)
        self.assertFalse(work.volumes["root"].is_outdated())
        self.stop(work)
        self.wait_jobs()
        (rev, stamp), = work.volumes["private"].revisions.items()
        self.assertEqual(sorted(glob.glob(self.path("appvms", "work", "private*"))),
                         [self.path("appvms", "work", name) for name in
                          ("private-precache.img", "private.img", f"private.img.{rev}@{stamp}Z")])

    def test_volatile_is_fresh_each_start(self):
        tpl = self.make_template()
        self.start(tpl)
        self.write_volume(tpl, "volatile", 0, b"swap" * 1024)
        self.stop(tpl)
        self.assertFalse(glob.glob(self.path("vm-templates", "fedora", "volatile*")))
        self.start(tpl)
        self.assertEqual(self.read_volume(tpl, "volatile", 0, 4096), bytes(4096))
        self.stop(tpl)

    def test_dispvm_is_discarded_and_removed(self):
        tpl = self.make_template()
        app = self.make_appvm("dvm-template", tpl)
        self.start(app)
        self.write_volume(app, "private", 0, harness.pattern("dvm", MiB))
        self.stop(app)
        disp = self.make_appvm("disp42", app, cls=fakes.FakeDispVM, volumes=fakes.DISPVM_VOLUMES)
        self.assertEqual(disp.volumes["root"].source.vid, "vm-templates/fedora/root")
        self.assertEqual(disp.volumes["private"].source.vid, "appvms/dvm-template/private")
        self.start(disp)
        self.assertEqual(self.read_volume(disp, "private", 0, MiB), harness.pattern("dvm", MiB))
        self.write_volume(disp, "private", 0, b"gone" * 1024)
        self.stop(disp)
        self.run_async(disp.storage.remove())  # stop() again, then remove()
        self.assertFalse(os.path.exists(self.path("appvms", "disp42")))
        self.start(app)
        self.assertEqual(self.read_volume(app, "private", 0, MiB), harness.pattern("dvm", MiB))
        self.stop(app)

    def test_concurrent_vms(self):
        tpl = self.make_template()
        vms = [self.make_appvm(f"vm{i}", tpl) for i in range(6)]

        async def cycle():
            import asyncio
            await asyncio.gather(*(vm.storage.start() for vm in vms))
            for i, vm in enumerate(vms):
                self.write_volume(vm, "private", 0, harness.pattern(i, MiB))
            await asyncio.gather(*(vm.storage.stop() for vm in vms))

        self.run_async(cycle())
        for i, vm in enumerate(vms):
            self.start(vm)
            self.assertEqual(self.read_volume(vm, "private", 0, MiB), harness.pattern(i, MiB))
            self.stop(vm)


class Revisions(IntegrationCase):
    def commit(self, vm, seed):
        self.start(vm)
        self.write_volume(vm, "private", 0, harness.pattern(seed, MiB))
        self.stop(vm)

    def latest(self, volume):
        """What qvm-volume revert picks: the newest by timestamp."""
        return sorted(volume.revisions.items(), key=lambda kv: (kv[1], int(kv[0])))[-1][0]

    def test_revert_latest_and_named(self):
        tpl = self.make_template()
        vm = self.make_appvm("work", tpl)
        vm.volumes["private"].revisions_to_keep = 3  # set by qubesd, no call
        for seed in ("a", "b", "c"):
            self.commit(vm, seed)
        private = vm.volumes["private"]
        self.assertEqual(list(private.revisions), ["1", "2", "3"])

        self.run_async(vm.storage.revert("private", "2"))  # holds "a"
        self.assertEqual(list(private.revisions), ["1", "3", "4"])  # 4 holds "c"
        self.start(vm)
        self.assertEqual(self.read_volume(vm, "private", 0, MiB), harness.pattern("a", MiB))
        self.stop(vm)

        self.run_async(vm.storage.revert("private", self.latest(private)))
        self.start(vm)
        with self.assertRaises(qubes.exc.StoragePoolException) as ctx:
            self.run_async(vm.storage.revert("private", next(iter(private.revisions))))
        self.assertEqual(str(ctx.exception), "Cannot revert: appvms/work/private is not cleanly stopped")
        self.stop(vm)

    def test_revisions_to_keep_reread_each_commit(self):
        tpl = self.make_template()
        vm = self.make_appvm("work", tpl)
        private = vm.volumes["private"]
        for seed in range(3):
            self.commit(vm, seed)
        self.assertEqual(len(private.revisions), 1)
        private.revisions_to_keep = 2
        self.commit(vm, "x")
        self.commit(vm, "y")
        self.assertEqual(len(private.revisions), 2)
        private.revisions_to_keep = 0
        self.commit(vm, "z")
        self.assertEqual(private.revisions, {})

    def test_snapshots_disabled(self):
        tpl = self.make_template()
        vm = self.make_appvm("big", tpl)
        self.commit(vm, "before")
        vm.storage.set_revisions_to_keep("private", -1)
        self.start(vm)
        private = vm.volumes["private"]
        self.assertEqual(private.revisions, {})
        self.assertEqual(private_files(self.path("appvms", "big")), ["private-dirty.img"])
        with self.assertRaises(qubes.exc.StoragePoolException):
            self.run_async(vm.storage.export("private"))
        clone = self.make_appvm("clone", tpl)
        with self.assertRaises(qubes.exc.StoragePoolException):
            self.run_async(clone.storage.import_volume(clone.volumes["private"], private))
        self.write_volume(vm, "private", 0, harness.pattern("after", MiB))
        self.stop(vm)
        self.assertEqual(private_files(self.path("appvms", "big")), ["private.img"])
        self.start(vm)
        self.assertEqual(self.read_volume(vm, "private", 0, MiB), harness.pattern("after", MiB))
        self.stop(vm)

    def test_commit_shares_unchanged_extents(self):
        tpl = self.make_template()
        vm = self.make_appvm("work", tpl)
        self.start(vm)
        self.write_volume(vm, "private", 0, harness.pattern("base", 64 * MiB))
        self.stop(vm)
        self.start(vm)
        self.write_volume(vm, "private", 8 * MiB, harness.pattern("new", MiB))
        self.stop(vm)
        self.wait_jobs()
        files = sorted(glob.glob(self.path("appvms", "work", "private*")))
        self.assertEqual(len(files), 3, files)  # image, precache, revision
        total, exclusive, shared = du(files)
        # Three 64 MiB files hold 65 MiB of data between them: the
        # revision keeps only the rewritten MiB of its own.
        self.assertEqual(total, 3 * 64 * MiB)
        self.assertLessEqual(exclusive + shared, 65 * MiB)
        self.assertGreaterEqual(shared, 64 * MiB)


def private_files(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("private"))


def data_on_disk(directory):
    """Data bytes the files under directory take on disk, each extent once
    (statvfs would also count metadata chunks btrfs allocates meanwhile)."""
    _, exclusive, shared = du([directory])
    return exclusive + shared


def du(paths):
    """btrfs filesystem du's Total, Exclusive and Set shared, in bytes."""
    out = harness.run("btrfs", "filesystem", "du", "--raw", "-s", *paths).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    total = sum(int(row[0]) for row in rows)
    exclusive = sum(int(row[1]) for row in rows)
    shared = int(rows[0][2]) if rows[0][2] != "-" else 0
    return total, exclusive, shared


class ResizeExportImport(IntegrationCase):
    def test_resize_stopped_and_running(self):
        tpl = self.make_template()
        vm = self.make_appvm("work", tpl)
        self.start(vm)
        self.write_volume(vm, "private", 0, harness.pattern("keep", MiB))
        self.stop(vm)
        private = vm.volumes["private"]
        old = private.size
        self.run_async(vm.storage.resize("private", old + 512 * MiB))
        self.assertEqual(private.size, old + 512 * MiB)
        rev = glob.glob(self.path("appvms", "work", "private.img.*"))
        self.assertEqual(os.path.getsize(rev[0]), old, "resize changed a revision")

        self.start(vm)
        dirty = private.block_device().path
        loop = harness.run("losetup", "--find", "--show", dirty).stdout.strip()
        try:
            self.run_async(vm.storage.resize("private", old + 1024 * MiB))
            sectors = int(open(f"/sys/block/{os.path.basename(loop)}/size").read())
            self.assertEqual(sectors * 512, old + 1024 * MiB, "loop device not told")
        finally:
            harness.run("losetup", "-d", loop)
        self.assertEqual(self.read_volume(vm, "private", 0, MiB), harness.pattern("keep", MiB))
        self.stop(vm)

        vm.volumes["root"].rw = False  # qvm-volume config, no driver call
        with self.assertRaises(qubes.exc.StoragePoolException) as ctx:
            self.run_async(vm.storage.resize("root", 20 << 30))
        self.assertIn("read-only", str(ctx.exception))

    def test_export_while_running_gives_committed_data(self):
        tpl = self.make_template()
        vm = self.make_appvm("work", tpl)
        self.start(vm)
        self.write_volume(vm, "private", 0, harness.pattern("committed", MiB))
        self.stop(vm)
        self.start(vm)
        self.write_volume(vm, "private", 0, harness.pattern("running", MiB))
        path = self.run_async(vm.storage.export("private"))
        with open(path, "rb") as f:
            self.assertEqual(f.read(MiB), harness.pattern("committed", MiB))
        self.run_async(vm.storage.export_end("private", path))
        self.stop(vm)

    def test_import_data_as_the_import_script_does(self):
        tpl = self.make_template()
        vm = self.make_appvm("restored", tpl)
        size = 64 * MiB
        source = os.path.join(self.state_dir, "backup.img")
        with open(source, "wb") as f:
            f.truncate(size)
            f.seek(5 * MiB)
            f.write(harness.pattern("restored", 3 * MiB))
        path = self.run_async(vm.storage.import_data("private", size))
        self.assertNotRegex(path, r"\s")
        self.assertEqual(os.path.getsize(path), size)
        dd(source, path, size)
        self.run_async(vm.storage.import_data_end("private", True))
        self.assertEqual(harness.sha256(self.path("appvms", "restored", "private.img")), harness.sha256(source))
        self.assertEqual(vm.volumes["private"].size, size)
        self.assertEqual(len(vm.volumes["private"].revisions), 1)

        # A failed import leaves the volume as it was.
        path = self.run_async(vm.storage.import_data("private", None))
        harness.write_at(path, 0, b"partial")
        self.run_async(vm.storage.import_data_end("private", False))
        self.assertFalse(os.path.exists(path))
        self.assertEqual(harness.sha256(self.path("appvms", "restored", "private.img")), harness.sha256(source))

    def test_clone_within_pool_is_a_reflink(self):
        tpl = self.make_template()
        src = self.make_appvm("src", tpl)
        self.start(src)
        self.write_volume(src, "private", 0, harness.pattern("clone me", 32 * MiB))
        self.stop(src)
        self.start(src)  # a running source is allowed: its committed data is cloned
        before = data_on_disk(self.path("appvms"))
        dst = self.make_appvm("dst", tpl)
        self.run_async(dst.storage.import_volume(dst.volumes["private"], src.volumes["private"]))
        self.stop(src)
        self.wait_jobs()
        grew = data_on_disk(self.path("appvms")) - before
        self.assertLess(grew, 4 * MiB, "clone copied the data instead of sharing it")
        self.assertEqual(harness.sha256(self.path("appvms", "dst", "private.img")),
                         harness.sha256(self.path("appvms", "src", "private.img")))
        self.assertEqual(dst.volumes["private"].size, src.volumes["private"].size)
        self.assertEqual(len(dst.volumes["private"].revisions), 1)

    def test_clone_across_filesystems_is_a_sparse_copy(self):
        tpl = self.make_template()
        src = self.make_appvm("src", tpl)
        self.start(src)
        self.write_volume(src, "private", 100 * MiB, harness.pattern("far", MiB))
        self.stop(src)
        with harness.LoopBtrfs(512 * MiB) as other_fs:
            other = self.make_pool()
            other.name = "other"
            other.dir_path = os.path.join(other_fs.mnt, "pool")
            self.run_async(other.setup())
            self.app.pools["other"] = other
            dst = fakes.FakeVM(self.app, "dst", template=tpl, base_dir=self.qubes_dir,
                               volume_config={"private": dict(fakes.APPVM_VOLUMES["private"], pool="other")})
            dst.init_storage()
            self.run_async(dst.storage.create())
            self.run_async(dst.storage.import_volume(dst.volumes["private"], src.volumes["private"]))
            img = os.path.join(other.dir_path, "appvms", "dst", "private.img")
            self.assertEqual(harness.sha256(img), harness.sha256(self.path("appvms", "src", "private.img")))
            self.assertLess(os.stat(img).st_blocks * 512, 4 * MiB, "the copy is not sparse")
            self.run_async(dst.storage.remove())

    def test_remove_deletes_every_file(self):
        tpl = self.make_template()
        vm = self.make_appvm("gone", tpl)
        for _ in range(2):
            self.start(vm)
            self.stop(vm)
        self.run_async(vm.storage.remove())
        self.assertFalse(os.path.exists(self.path("appvms", "gone")))
        self.assertEqual(self.pool.list_volumes().count(vm.volumes["private"]), 0)


def dd(source, target, size):
    """The copy admin.vm.volume.Import's script makes."""
    with open(source, "rb") as src:
        subprocess.run(
            ["dd", f"of={target}", "bs=128K", f"count={size}", "iflag=count_bytes,fullblock",
             "conv=sparse,notrunc,nocreat,fdatasync", "status=none"],
            stdin=src, check=True,
        )


class Robustness(IntegrationCase):
    def test_qubesd_restart_commits_after_daemon_crash(self):
        tpl = self.make_template()
        vm = self.make_appvm("work", tpl)
        self.start(vm)
        data = harness.pattern("unsaved", 2 * MiB)
        self.write_volume(vm, "private", 0, data)
        self.daemon.kill()  # power loss: no stop() ran
        self.daemon.start()

        # qubesd starts: new pool and volume objects, then stop() on every
        # halted VM's volumes, twice for good measure.
        self.pool = self.make_pool()
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)
        tpl2 = fakes.FakeTemplateVM(self.app, "fedora", volume_config=fakes.TEMPLATE_VOLUMES, base_dir=self.qubes_dir)
        tpl2.init_storage()
        vm2 = fakes.FakeVM(self.app, "work", template=tpl2, volume_config=fakes.APPVM_VOLUMES, base_dir=self.qubes_dir)
        vm2.init_storage()
        for _ in range(2):
            self.run_async(tpl2.storage.stop())
            self.run_async(vm2.storage.stop())
        self.assertFalse(vm2.volumes["private"].is_dirty())
        self.start(vm2)
        self.assertEqual(self.read_volume(vm2, "private", 0, len(data)), data)
        self.stop(vm2)
        self.wait_jobs()  # the commit's job writes its precache through a temp file
        leftovers = [n for n in os.listdir(self.path("appvms", "work")) if "~" in n]
        self.assertEqual(leftovers, [])

    def test_hostile_names_are_refused(self):
        tpl = self.make_template()
        evil = fakes.FakeVM(self.app, "evil", template=tpl, base_dir=self.qubes_dir,
                            volume_config={"private": dict(fakes.APPVM_VOLUMES["private"], vid="appvms/../../etc")})
        os.makedirs(evil.dir_path, exist_ok=True)
        evil.init_storage()
        for op in (evil.storage.create(), evil.storage.start()):
            with self.assertRaises(qubes.exc.StoragePoolException) as ctx:
                self.run_async(op)
            self.assertIn("appvms/../../etc", str(ctx.exception))
        self.assertTrue(os.path.exists("/etc/passwd"))

    def test_daemon_down_is_a_storage_error(self):
        tpl = self.make_template()
        self.daemon.stop()
        try:
            with self.assertRaises(qubes.exc.StoragePoolException) as ctx:
                self.run_async(tpl.storage.start())
            self.assertRegex(str(ctx.exception), re.escape(self.daemon.socket))
        finally:
            self.daemon.start()
