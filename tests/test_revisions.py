# SPDX-License-Identifier: GPL-2.0-or-later
"""Revisions and the files of a volume survive what qubesd may do around
them: refused commits, planted files, concurrent removals; through the
shim and the real daemon."""

import asyncio
import contextlib
import os
import re
import time

import qubes.exc
from qubes.tests import fakes

from tests import harness
from tests.base import MiB, IntegrationCase, quiet

# What file-reflink's revision glob of volume "private" picks up.
REVISION_NAME = re.compile(r"private\.img\..+@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class FailedCommits(IntegrationCase):
    def make_pool(self, **options):
        options.setdefault("revisions_to_keep", "2")
        return super().make_pool(**options)

    def committed_thrice(self):
        """An AppVM whose private has had images A, B and C committed."""
        vm = self.make_appvm("work", self.make_template())
        for seed in ("A", "B", "C"):
            self.start(vm)
            self.write_volume(vm, "private", 0, harness.pattern(seed, MiB))
            self.stop(vm)
        return vm

    def revision_files(self):
        directory = self.path("appvms", "work")
        return {name: harness.sha256(os.path.join(directory, name))
                for name in os.listdir(directory) if REVISION_NAME.fullmatch(name)}

    def assert_refused_twice(self, call):
        before = self.revision_files()
        clean = harness.sha256(self.path("appvms", "work", "private.img"))
        self.assertEqual(len(before), 2)
        for attempt in range(2):
            with quiet(), self.assertRaises(qubes.exc.StoragePoolException):
                self.run_async(call())
            self.assertEqual(self.revision_files(), before, f"attempt {attempt} changed the revisions")
            self.assertEqual(harness.sha256(self.path("appvms", "work", "private.img")), clean)

    def test_import_end_without_import(self):
        vm = self.committed_thrice()
        self.assert_refused_twice(lambda: vm.storage.import_data_end("private", True))

    def test_start_between_import_and_its_end(self):
        vm = self.committed_thrice()
        path = self.run_async(vm.storage.import_data("private", None))
        harness.write_at(path, 0, harness.pattern("import", MiB))
        self.start(vm)  # drops the unfinished import
        self.stop(vm)
        self.assert_refused_twice(lambda: vm.storage.import_data_end("private", True))

    def test_stop_with_foreign_dirty_image(self):
        vm = self.committed_thrice()
        os.symlink("private.img", self.path("appvms", "work", "private-dirty.img"))
        self.assert_refused_twice(lambda: vm.volumes["private"].stop())

    def test_import_end_with_directories_planted(self):
        vm = self.committed_thrice()
        for name in ("private-precache.img", "private-dirty.img", "private-import.img"):
            with self.subTest(planted=name):
                path = self.run_async(vm.storage.import_data("private", None))
                harness.write_at(path, 0, harness.pattern("import", MiB))
                planted = self.path("appvms", "work", name)
                if os.path.exists(planted):
                    os.remove(planted)
                os.mkdir(planted)
                with open(os.path.join(planted, "x"), "w", encoding="ascii") as f:
                    f.write("x")
                self.assert_refused_twice(lambda: vm.storage.import_data_end("private", True))
                os.remove(os.path.join(planted, "x"))
                os.rmdir(planted)


class ClashingNames(IntegrationCase):
    def test_volume_named_after_another_volumes_image(self):
        tpl = self.make_template()
        work = self.make_appvm("work", tpl)
        self.start(work)
        data = harness.pattern("running", MiB)
        self.write_volume(work, "private", 0, data)
        for name in ("private-dirty", "private-precache", "private-import", "private.img"):
            with self.subTest(volume=name):
                config = {name: dict(fakes.TEMPLATE_VOLUMES["private"], name=name, pool=self.pool.name)}
                other = fakes.FakeVM(self.app, "work", template=tpl, volume_config=config,
                                     base_dir=self.qubes_dir)
                other.init_storage()
                with quiet(), self.assertRaisesRegex(qubes.exc.StoragePoolException, "could be another volume's"):
                    self.run_async(other.storage.create())
                self.assertEqual(self.read_volume(work, "private", 0, MiB), data)
        self.stop(work)
        self.start(work)
        self.assertEqual(self.read_volume(work, "private", 0, MiB), data)
        self.stop(work)


class RevisionIds(IntegrationCase):
    def test_numbers_past_the_id_range(self):
        vm = self.make_appvm("work", self.make_template())
        self.start(vm)
        self.stop(vm)
        directory = self.path("appvms", "work")
        last = "private.img.9999999999999999999@2026-01-01T00:00:00Z"
        odd = ["private.img.10000000000000000000@2026-01-02T00:00:00Z",
               "private.img.01@2026-01-03T00:00:00Z", "private.img.x@2026-01-04T00:00:00Z"]
        for name in [last] + odd:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(harness.pattern(name, 4096))
        private = vm.volumes["private"]
        self.assertEqual(list(private.revisions)[-1], "9999999999999999999")
        self.assertEqual(len(private.revisions), 2)

        self.start(vm)
        self.write_volume(vm, "private", 0, harness.pattern("new", MiB))
        before = {n: harness.sha256(os.path.join(directory, n)) for n in os.listdir(directory) if "@" in n}
        with quiet(), self.assertRaisesRegex(qubes.exc.StoragePoolException, "largest number"):
            self.run_async(private.stop())
        self.assertEqual({n: harness.sha256(os.path.join(directory, n))
                          for n in os.listdir(directory) if "@" in n}, before)
        os.remove(os.path.join(directory, last))  # what the message asks for
        self.stop(vm)
        with open(self.path("appvms", "work", "private.img"), "rb") as f:
            self.assertEqual(f.read(MiB), harness.pattern("new", MiB), "the stop did not commit")
        for name in odd:
            self.assertTrue(os.path.exists(os.path.join(directory, name)), f"{name} was pruned")
        self.run_async(vm.storage.remove())
        self.assertFalse(os.path.exists(directory), os.listdir(directory) if os.path.exists(directory) else "")


class ConcurrentRemoval(IntegrationCase):
    def test_removing_a_vm_removes_its_volumes_at_once(self):
        """qubesd's Storage.remove() gathers every volume's remove(); one
        empties the directory and removes it while the others still work
        in it. Each round is a fresh VM; removing it again is harmless."""
        tpl = self.make_template()
        extra = {f"data{i}": dict(fakes.TEMPLATE_VOLUMES["private"], name=f"data{i}", pool=self.pool.name)
                 for i in range(8)}
        for round_ in range(10):
            vm = self.make_appvm(f"gone{round_}", tpl, volumes={**fakes.APPVM_VOLUMES, **extra})
            self.start(vm)
            self.stop(vm)
            self.run_async(vm.storage.remove())
            self.assertFalse(os.path.exists(self.path("appvms", vm.name)), f"round {round_}")
            self.run_async(vm.storage.remove())


class PipeExport:
    """A source volume of another driver whose export is a named pipe."""

    vid = "appvms/piped/private"
    snapshots_disabled = False

    def __init__(self, path):
        self.path = path

    def is_running(self):
        return False

    async def export(self):
        return self.path

    async def export_end(self, path):
        pass


class ImportSources(IntegrationCase):
    def test_import_from_a_pipe_is_refused_at_once(self):
        clone = self.make_appvm("clone", self.make_template())
        fifo = os.path.join(self.state_dir, "export.fifo")
        os.mkfifo(fifo)
        self.addCleanup(os.remove, fifo)
        started = time.monotonic()
        try:
            with quiet(), self.assertRaisesRegex(qubes.exc.StoragePoolException, "not a regular file or a block device"):
                self.run_async(asyncio.wait_for(
                    clone.storage.import_volume(clone.volumes["private"], PipeExport(fifo)), 20))
        finally:
            unblock(fifo)
        self.assertLess(time.monotonic() - started, 10)
        # The volume's lock is free: it starts and stops as before.
        self.start(clone)
        self.stop(clone)


def unblock(fifo):
    """Let a reader hung in the pipe's open go on: open it for writing."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


class HardLinksOut(IntegrationCase):
    def plant(self, vm, name):
        """Replace the pool file name of vm with a hard link to a file
        outside the pool, on the same filesystem; return that file's path
        and digest."""
        outside = os.path.join(self.fs.mnt, f"outside-{self.id().rsplit('.', 1)[-1]}-{name}")
        with open(outside, "wb") as f:
            f.write(harness.pattern("outside", MiB))
        planted = self.path("appvms", vm.name, name)
        if os.path.exists(planted):
            os.remove(planted)
        os.link(outside, planted)
        return outside, harness.sha256(outside)

    def test_resize_of_a_linked_dirty_image(self):
        vm = self.make_appvm("work", self.make_template())
        self.start(vm)
        outside, digest = self.plant(vm, "private-dirty.img")
        with quiet(), self.assertRaisesRegex(qubes.exc.StoragePoolException, "hard links"):
            self.run_async(vm.storage.resize("private", vm.volumes["private"].size * 2))
        self.assertEqual(harness.sha256(outside), digest)
        self.assertEqual(os.stat(outside).st_size, MiB)

    def test_start_of_a_linked_image_with_snapshots_disabled(self):
        vm = self.make_appvm("big", self.make_template())
        vm.storage.set_revisions_to_keep("private", -1)
        outside, digest = self.plant(vm, "private.img")
        with quiet(), self.assertRaisesRegex(qubes.exc.StoragePoolException, "hard links"):
            self.start(vm)
        self.assertFalse(os.path.exists(self.path("appvms", "big", "private-dirty.img")))
        self.assertEqual(harness.sha256(outside), digest)
