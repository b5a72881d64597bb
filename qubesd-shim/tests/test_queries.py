# SPDX-License-Identifier: GPL-2.0-or-later
"""Sync queries answered from a file-reflink layout in a temp directory,
without the daemon."""

import os
import shutil
import tempfile
import unittest
import unittest.mock

import qubes.exc
import qubes.storage

from qubes_btrfs_vdo import client
from tests import support

MiB = 1024 * 1024


def write(path, size, data=b""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.truncate(size)


class SyncQueryCase(unittest.TestCase):
    """A pool's layout in a temporary directory, and no daemon: the sync
    queries read the layout alone, so a daemon call would be a bug and
    fails loudly."""

    def setUp(self):
        self.pool_dir = tempfile.mkdtemp(prefix="btrfs-vdo-layout-")
        self.addCleanup(shutil.rmtree, self.pool_dir, ignore_errors=True)
        self.fx = support.Fixture(dir_path=self.pool_dir)
        patch = unittest.mock.patch.object(
            client, "call", side_effect=AssertionError("daemon called"))
        patch.start()
        self.addCleanup(patch.stop)


class TestSyncQueries(SyncQueryCase):

    def setUp(self):
        super().setUp()
        self.private = self.fx.work.volumes["private"]
        self.root = self.fx.work.volumes["root"]
        self.volatile = self.fx.work.volumes["volatile"]
        self.tpl_root = self.fx.template.volumes["root"]

    def p(self, vid, suffix):
        return os.path.join(self.pool_dir, vid + suffix)

    def test_nothing_on_disk(self):
        for vol in (self.private, self.root, self.volatile, self.tpl_root):
            with self.subTest(vid=vol.vid):
                self.assertEqual(vol.size, vol._size)
                self.assertEqual(vol.usage, 0)
                self.assertEqual(vol.revisions, {})
                self.assertFalse(vol.is_dirty())
                self.assertFalse(vol.is_outdated())

    def test_size_and_usage_precedence(self):
        vid = self.private.vid
        write(self.p(vid, ".img"), 1 * MiB, b"c" * 8192)
        self.assertEqual(self.private.size, 1 * MiB)
        clean_usage = os.stat(self.p(vid, ".img")).st_blocks * 512
        self.assertEqual(self.private.usage, clean_usage)
        self.assertGreater(clean_usage, 0)

        write(self.p(vid, "-dirty.img"), 3 * MiB, b"d" * 65536)
        self.assertEqual(self.private.size, 3 * MiB)
        dirty_usage = os.stat(self.p(vid, "-dirty.img")).st_blocks * 512
        self.assertEqual(self.private.usage, dirty_usage)
        self.assertIsInstance(self.private.usage, int)

        os.remove(self.p(vid, ".img"))
        os.remove(self.p(vid, "-dirty.img"))
        self.assertEqual(self.private.size, self.private._size)
        self.assertEqual(self.private.usage, 0)

    def test_precache_and_import_do_not_count(self):
        vid = self.private.vid
        write(self.p(vid, "-precache.img"), 5 * MiB, b"p")
        write(self.p(vid, "-import.img"), 7 * MiB, b"i")
        self.assertEqual(self.private.size, self.private._size)
        self.assertEqual(self.private.usage, 0)

    def test_revisions(self):
        vid = self.private.vid
        write(self.p(vid, ".img"), 0)
        stamps = {"12": "2026-11-25T18:40:11", "2": "2026-11-21T10:00:00",
                  "1": "2026-11-20T09:15:02"}
        for rev, stamp in stamps.items():
            write(self.p(vid, f".img.{rev}@{stamp}Z"), 0)
        write(self.p(vid, ".img.3@2026-11-22T00:00:00Z~a1b2"), 0)
        write(self.p("appvms/work/volatile", ".img.9@2026-11-22T00:00:00Z"), 0)
        revisions = self.private.revisions
        self.assertEqual(list(revisions), ["1", "2", "12"])
        self.assertEqual(revisions, stamps)
        self.assertEqual(self.volatile.revisions,
                         {"9": "2026-11-22T00:00:00"})

    def test_revisions_unreadable_directory(self):
        vid_dir = os.path.dirname(self.p(self.private.vid, ".img"))
        os.makedirs(os.path.dirname(vid_dir), exist_ok=True)
        write(vid_dir, 0)  # a file where the directory should be
        self.assertEqual(self.private.revisions, {})
        self.assertEqual(self.private.size, self.private._size)
        self.assertFalse(self.private.is_dirty())

    def test_is_dirty(self):
        self.assertFalse(self.private.is_dirty())
        write(self.p(self.private.vid, "-dirty.img"), 10)
        self.assertTrue(self.private.is_dirty())
        # Only save_on_stop volumes can be dirty.
        write(self.p(self.volatile.vid, "-dirty.img"), 10)
        self.assertFalse(self.volatile.is_dirty())
        write(self.p(self.root.vid, "-dirty.img"), 10)
        self.assertFalse(self.root.is_dirty())

    def test_is_outdated(self):
        src = self.p(self.tpl_root.vid, ".img")
        own = self.p(self.root.vid, ".img")
        write(src, 10)
        self.assertFalse(self.root.is_outdated())  # own .img missing
        os.makedirs(os.path.dirname(own), exist_ok=True)
        os.link(src, own)  # what start() does
        self.assertFalse(self.root.is_outdated())
        # The template commits: its .img becomes a new inode.
        write(src + "~new", 10)
        os.rename(src + "~new", src)
        self.assertTrue(self.root.is_outdated())
        os.remove(src)
        self.assertFalse(self.root.is_outdated())  # source missing
        # Only snapshots can be outdated.
        write(self.p(self.private.vid, ".img"), 10)
        self.assertFalse(self.private.is_outdated())
        self.assertFalse(self.tpl_root.is_outdated())

    def test_block_device(self):
        dev = self.private.block_device()
        self.assertIsInstance(dev, qubes.storage.BlockDevice)
        self.assertEqual(dev.path, self.p(self.private.vid, "-dirty.img"))
        self.assertEqual(self.private.path, dev.path)
        self.assertEqual(dev.name, "private")
        self.assertIs(dev.rw, True)
        self.assertIsNone(dev.domain)
        self.assertEqual(dev.devtype, "disk")
        self.private.rw = False
        self.assertIs(self.private.block_device().rw, False)

    def test_encrypted_device(self):
        pool_dir = self.pool_dir
        fx = support.Fixture(dir_path=pool_dir, ephemeral_volatile="True")
        volatile = fx.work.volumes["volatile"]
        self.assertTrue(volatile.ephemeral)
        devices = list(fx.work.storage.block_devices())
        crypt = [d for d in devices if d.name == "volatile"][0]
        self.assertEqual(
            crypt.path, "/dev/mapper/vm-volatile-work-crypt@volatile")


class TestInvalidVidQueries(SyncQueryCase):
    """A volume whose vid paths.validate_vid refuses still loads (a refusal
    would fail the whole VM), and its sync queries report nothing on disk,
    whatever files lie where the vid would point."""

    def setUp(self):
        super().setUp()
        self.tpl_root = self.fx.template.volumes["root"]
        write(os.path.join(self.pool_dir, self.tpl_root.vid + ".img"), 10)

    def plant(self, vid):
        """Files where a vid inside the pool directory would point; it
        reports whether there were any (some vids name no file there)."""
        base = os.path.join(self.pool_dir, vid)
        if "\0" in vid or not os.path.realpath(base).startswith(
                self.pool_dir + os.sep):
            return False
        try:
            for suffix in (".img", "-dirty.img",
                           ".img.1@2026-11-20T09:15:02Z"):
                write(base + suffix, MiB, b"x" * 8192)
        except OSError:
            return False  # a name the filesystem cannot hold
        return True

    def volumes(self, vid):
        """An origin and a snapshot volume named *vid*."""
        origin = self.fx.pool.init_volume(self.fx.work, {
            "name": "private", "vid": vid, "rw": True,
            "save_on_stop": True, "size": 1024})
        snapshot = self.fx.pool.init_volume(self.fx.work, {
            "name": "root", "vid": vid, "rw": True, "snap_on_start": True,
            "source": self.tpl_root, "size": 2048})
        return origin, snapshot

    def test_every_invalid_vid(self):
        table = support.load_json(support.PATHS_JSON)
        self.assertTrue(table["invalid_vids"])
        planted = 0
        for vid in table["invalid_vids"]:
            with self.subTest(vid=vid):
                planted += self.plant(vid)
                for vol in self.volumes(vid):
                    self.assertIsNone(vol.path)
                    self.assertEqual(vol.size, vol._size)
                    self.assertEqual(vol.usage, 0)
                    self.assertEqual(vol.revisions, {})
                    self.assertFalse(vol.is_dirty())
                    self.assertFalse(vol.is_outdated())
                    with self.assertRaises(
                            qubes.exc.StoragePoolException) as cm:
                        vol.block_device()
                    self.assertEqual(str(cm.exception),
                                     f"Cannot attach: {vid}: invalid vid")
        # Some of the vids point inside the pool: their files were there.
        self.assertGreater(planted, 0)
