# SPDX-License-Identifier: GPL-2.0-or-later
"""An existing file-reflink pool directory works unchanged once qubes.xml's
driver says btrfs-vdo: revisions, precache and dirty leftovers included."""

import os
import subprocess

from qubes.tests import fakes

from tests import harness
from tests.base import MiB, IntegrationCase


def reflink(src, dst, *, mtime=None):
    subprocess.run(["cp", "--reflink=always", src, dst], check=True)
    if mtime is not None:
        os.utime(dst, ns=(mtime, mtime))


class TakeOver(IntegrationCase):
    def lay_out_file_reflink_pool(self):
        """The files file-reflink leaves for a template and an AppVM after a
        few shutdowns, one AppVM left running by a power loss."""
        tpl_dir = self.path("vm-templates", "fedora")
        app_dir = self.path("appvms", "work")
        os.makedirs(tpl_dir)
        os.makedirs(app_dir)
        self.contents = {}
        for name, seed in (("root", "tpl-root"), ("private", "tpl-private")):
            img = os.path.join(tpl_dir, name + ".img")
            with open(img, "wb") as f:
                f.truncate(64 * MiB)
                f.write(harness.pattern(seed, 4 * MiB))
            os.utime(img, (1_700_000_000, 1_700_000_000))
            reflink(img, os.path.join(tpl_dir, name + "-precache.img"), mtime=os.stat(img).st_mtime_ns)
            self.contents["vm-templates/fedora/" + name] = harness.sha256(img)

        img = os.path.join(app_dir, "private.img")
        revisions = {}
        for n, (seed, stamp) in enumerate((("old-1", 1_690_000_000), ("old-2", 1_695_000_000)), start=1):
            with open(img, "wb") as f:
                f.truncate(32 * MiB)
                f.write(harness.pattern(seed, MiB))
            timestamp = "2023-07-22T04:26:40" if n == 1 else "2023-09-18T01:20:00"
            rev = os.path.join(app_dir, f"private.img.{n}@{timestamp}Z")
            reflink(img, rev)
            revisions[str(n)] = harness.sha256(rev)
        with open(img, "r+b") as f:
            f.write(harness.pattern("current", MiB))
        os.utime(img, (1_700_000_100, 1_700_000_100))
        # A stale precache: its mtime no longer matches the image.
        reflink(img, os.path.join(app_dir, "private-precache.img"), mtime=1_600_000_000 * 10**9)
        self.contents["appvms/work/private"] = harness.sha256(img)
        self.revisions = revisions
        # Leftovers of an interrupted write.
        open(os.path.join(app_dir, "private.img~a1b2c3"), "wb").close()

    def setUp(self):
        super().setUp()
        self.lay_out_file_reflink_pool()

    def test_existing_pool_is_driven_unchanged(self):
        self.drive_taken_over_pool()

    def test_pool_directory_behind_a_symlink(self):
        """A pool directory moved to another disk and linked from its old
        path, as file-reflink serves it."""
        moved = self.dir_path + "-moved"
        os.rename(self.dir_path, moved)
        os.symlink(moved, self.dir_path)
        self.drive_taken_over_pool()
        self.assertTrue(os.path.islink(self.dir_path))
        self.assertTrue(any(n.startswith("private.img.3@") for n in os.listdir(os.path.join(moved, "appvms", "work"))),
                        "the commit's revision is not in the directory the link leads to")

    def drive_taken_over_pool(self):
        tpl = fakes.FakeTemplateVM(self.app, "fedora", volume_config=fakes.TEMPLATE_VOLUMES, base_dir=self.qubes_dir)
        work = fakes.FakeVM(self.app, "work", template=tpl, volume_config=fakes.APPVM_VOLUMES, base_dir=self.qubes_dir)
        for vm in (tpl, work):
            os.makedirs(vm.dir_path, exist_ok=True)
            vm.init_storage()
        private = work.volumes["private"]
        self.assertEqual(list(private.revisions.items()),
                         [("1", "2023-07-22T04:26:40"), ("2", "2023-09-18T01:20:00")])
        self.assertEqual(tpl.volumes["root"].size, 64 * MiB)

        precache = self.path("vm-templates", "fedora", "root-precache.img")
        precache_inode = os.stat(precache).st_ino
        self.start(tpl)
        self.assertEqual(os.stat(tpl.volumes["root"].block_device().path).st_ino, precache_inode,
                         "a valid precache was not used")
        self.assertEqual(harness.sha256(tpl.volumes["root"].block_device().path),
                         self.contents["vm-templates/fedora/root"])
        self.stop(tpl)

        private.revisions_to_keep = 2
        self.start(work)
        self.assertEqual(harness.sha256(private.block_device().path), self.contents["appvms/work/private"],
                         "a stale precache was used instead of the image")
        self.assertFalse(any("~" in n for n in os.listdir(self.path("appvms", "work"))))
        self.write_volume(work, "private", 0, harness.pattern("new", MiB))
        self.stop(work)
        self.assertEqual(list(private.revisions), ["2", "3"])

        self.run_async(work.storage.revert("private", "2"))
        self.assertEqual(harness.sha256(self.path("appvms", "work", "private.img")), self.revisions["2"])
