# SPDX-License-Identifier: GPL-2.0-or-later
"""Checks that the stand-in behaves like qubes-core-admin 1ad5f9b8 where
driver tests depend on it."""

import asyncio
import os
import shutil
import stat
import sys
import tempfile
import unittest
import unittest.mock

import qubes
import qubes.exc
import qubes.storage
import qubes.utils
from qubes.tests import fakes


class ListPool(qubes.storage.Pool):
    """A pool implementing list_volumes but not get_volume."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.vols = []

    def list_volumes(self):
        return list(self.vols)

    def init_volume(self, vm, volume_config):
        volume_config["pool"] = self
        volume_config.setdefault(
            "vid", f"{vm.dir_path_prefix}/{vm.name}/{volume_config['name']}")
        vol = qubes.storage.Volume(**volume_config)
        self.vols.append(vol)
        return vol


class TestParseBool(unittest.TestCase):

    def test_cases(self):
        for value in (True, "True", "1", "on"):
            self.assertIs(qubes.utils.parse_bool(value), True, value)
        for value in (False, "False", "0", "off", ""):
            self.assertIs(qubes.utils.parse_bool(value), False, value)
        for value in ("true", "yes", "2", None, 1, 0):
            with self.assertRaises(ValueError):
                qubes.utils.parse_bool(value)


class TestVolume(unittest.TestCase):

    def setUp(self):
        self.pool = ListPool(name="p")

    def test_conversions(self):
        vol = qubes.storage.Volume(name="v", pool=self.pool, vid="a/b/v",
                                   revisions_to_keep="2", size="1024")
        self.assertEqual((vol.revisions_to_keep, vol.size), (2, 1024))
        self.assertEqual(str(vol), "a/b/v")
        self.assertEqual(repr(vol), "'p:a/b/v'")
        self.assertEqual(vol.config, {
            "name": "v", "pool": "p", "vid": "a/b/v", "revisions_to_keep": 2,
            "rw": False, "save_on_stop": False, "snap_on_start": False,
            "size": 1024})

    def test_ctor_checks(self):
        src = qubes.storage.Volume(name="s", pool=self.pool, vid="s")
        with self.assertRaises(qubes.exc.StoragePoolException):
            qubes.storage.Volume(name="v", pool=self.pool, vid="v",
                                 snap_on_start=True)
        with self.assertRaises(qubes.exc.StoragePoolException):
            qubes.storage.Volume(name="v", pool=self.pool, vid="v",
                                 source=src)
        with self.assertRaises(TypeError):
            qubes.storage.Volume(name="v", pool=self.pool, vid="v", bogus=1)
        with self.assertRaises(AssertionError):
            qubes.storage.Volume(name="v", pool="p", vid="v")
        other = ListPool(name="other")
        with self.assertRaises(AssertionError):
            qubes.storage.Volume(name="v", pool=other, vid="v",
                                 snap_on_start=True, source=src)
        with self.assertRaises(ValueError):
            qubes.storage.Volume(name="v", pool=self.pool, vid="v",
                                 size="big")

    def test_identity(self):
        a = qubes.storage.Volume(name="x", pool=self.pool, vid="v")
        b = qubes.storage.Volume(name="y", pool=ListPool(name="p"), vid="v")
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertNotEqual(a, qubes.storage.Volume(
            name="x", pool=self.pool, vid="w"))

    def test_snapshots_disabled_and_ephemeral(self):
        vol = qubes.storage.Volume(name="v", pool=self.pool, vid="v",
                                   save_on_stop=True, revisions_to_keep=-1)
        self.assertTrue(vol.snapshots_disabled)
        self.assertFalse(vol.ephemeral)
        with self.assertRaises(qubes.exc.QubesValueError):
            vol.ephemeral = True
        volatile = qubes.storage.Volume(name="v", pool=self.pool, vid="x",
                                        rw=True)
        self.assertFalse(volatile.ephemeral)
        self.pool.ephemeral_volatile = True
        self.assertTrue(volatile.ephemeral)
        volatile.ephemeral = False
        self.assertFalse(volatile.ephemeral)
        self.assertEqual(volatile.config["ephemeral"], False)

    def test_state_file(self):
        vol = qubes.storage.Volume(name="v", pool=ListPool(name="my-pool"),
                                   vid="appvms/my-vm/private")
        with unittest.mock.patch.object(
                qubes.storage, "VOLUME_STATE_DIR", "/x"):
            self.assertEqual(
                vol.state_file,
                "/x/volume-running-my--pool:appvms-my--vm-private")

    def test_encrypted_names(self):
        vol = qubes.storage.Volume(name="volatile", pool=self.pool, vid="v",
                                   rw=True)
        self.assertEqual(
            vol.encrypted_volume_path("my_vm-1", "volatile"),
            "/dev/mapper/vm-volatile-my_uvm_d1-crypt@volatile")
        dev = vol.make_encrypted_device(
            qubes.storage.BlockDevice("/p", "volatile"), "vm")
        self.assertEqual(dev.path, "/dev/mapper/vm-volatile-vm-crypt@volatile")

    def test_block_device_asserts(self):
        with self.assertRaises(AssertionError):
            qubes.storage.BlockDevice("/p", "n", script="block")
        with self.assertRaises(AssertionError):
            qubes.storage.BlockDevice("", "n")
        with self.assertRaises(AssertionError):
            qubes.storage.BlockDevice("/p", "")

    def test_not_implemented(self):
        vol = qubes.storage.Volume(name="v", pool=self.pool, vid="v")
        with self.assertRaises(NotImplementedError):
            asyncio.run(vol.start())
        with self.assertRaises(NotImplementedError):
            vol.revisions  # pylint: disable=pointless-statement
        with self.assertRaises(NotImplementedError):
            vol.is_dirty()
        self.assertIsNone(asyncio.run(vol.export_end("/p")))

    def test_locked_serializes(self):
        order = []

        class Slow(qubes.storage.Volume):
            @qubes.storage.Volume.locked
            async def start(self):
                order.append("in")
                await asyncio.sleep(0.01)
                order.append("out")

        async def main():
            vol = Slow(name="v", pool=self.pool, vid="v")
            await asyncio.gather(vol.start(), vol.start())

        asyncio.run(main())
        self.assertEqual(order, ["in", "out", "in", "out"])


class TestPoolAndHelpers(unittest.TestCase):

    def test_pool_base(self):
        pool = ListPool(name="p", revisions_to_keep="2",
                        ephemeral_volatile="False")
        self.assertEqual(pool.revisions_to_keep, "2")  # kept as given
        self.assertIs(pool.ephemeral_volatile, False)
        self.assertEqual(pool, "p")
        self.assertEqual(str(pool), "p")
        self.assertEqual(pool.usage_details, {})
        with self.assertRaises(NotImplementedError):
            pool.config  # pylint: disable=pointless-statement

    def test_volumes_collection_fallback(self):
        pool = ListPool(name="p")
        vol = qubes.storage.Volume(name="v", pool=pool, vid="a/b/v")
        pool.vols.append(vol)
        self.assertIs(pool.volumes["a/b/v"], vol)
        self.assertIs(pool.volumes[vol], vol)
        self.assertIn("a/b/v", pool.volumes)
        self.assertNotIn("a/b/w", pool.volumes)
        self.assertEqual(pool.volumes.keys(), ["a/b/v"])
        with self.assertRaises(KeyError):
            pool.volumes["a/b/w"]  # pylint: disable=pointless-statement
        other = qubes.storage.Volume(name="v", pool=ListPool(name="q"),
                                     vid="a/b/v")
        with self.assertRaises(KeyError):
            pool.volumes[other]  # pylint: disable=pointless-statement

    def test_isodate(self):
        self.assertEqual(qubes.storage.isodate(0), "1970-01-01T00:00:00")
        self.assertEqual(qubes.storage.isodate(1795166102),
                         "2026-11-20T09:15:02")

    def test_search_pool_containing_dir(self):
        outer = ListPool(name="outer")
        outer.dir_path = "/var/lib/qubes"
        lvm = ListPool(name="lvm")
        found = qubes.storage.search_pool_containing_dir(
            [lvm, outer], "/var/lib/qubes/vdo")
        self.assertIs(found, outer)
        self.assertIsNone(qubes.storage.search_pool_containing_dir(
            [outer], "/srv/vdo"))

    def test_entry_point_lookup(self):
        with self.assertRaises(KeyError):
            qubes.utils.get_entry_point_one("qubes.storage", "no-such-driver")

    def test_entry_point_claimed_twice(self):
        """Two installs of one driver name: qubesd's lookup fails with
        AttributeError while building its TypeError's message."""
        tmp = tempfile.mkdtemp(prefix="qubes-stub-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        for dist in ("first", "second"):
            info = os.path.join(tmp, f"{dist}-1.0.dist-info")
            os.makedirs(info)
            with open(os.path.join(info, "METADATA"), "w") as fh:
                fh.write(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
            with open(os.path.join(info, "entry_points.txt"), "w") as fh:
                fh.write(f"[qubes.storage]\nstub-twice = {dist}:Pool\n")
        sys.path.insert(0, tmp)
        self.addCleanup(sys.path.remove, tmp)
        with self.assertRaises(AttributeError):
            qubes.utils.get_entry_point_one("qubes.storage", "stub-twice")


class TestFileHelpers(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qubes-stub-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.dst = os.path.join(self.tmp, "file.img")

    def test_replace_file_success(self):
        with open(self.dst, "w") as fh:
            fh.write("old")
        with qubes.utils.replace_file(self.dst, permissions=0o600) as tmp:
            self.assertTrue(os.path.basename(tmp.name).startswith("file.img~"))
            tmp.write(b"new")
            with open(self.dst) as fh:
                self.assertEqual(fh.read(), "old")  # not yet replaced
        with open(self.dst) as fh:
            self.assertEqual(fh.read(), "new")
        self.assertEqual(stat.S_IMODE(os.stat(self.dst).st_mode), 0o600)
        self.assertEqual(os.listdir(self.tmp), ["file.img"])

    def test_replace_file_failure_leaves_old(self):
        with open(self.dst, "w") as fh:
            fh.write("old")
        with self.assertRaises(RuntimeError):
            with qubes.utils.replace_file(self.dst, permissions=0o600) as tmp:
                tmp.write(b"half")
                raise RuntimeError("boom")
        with open(self.dst) as fh:
            self.assertEqual(fh.read(), "old")
        self.assertEqual(os.listdir(self.tmp), ["file.img"])

    def test_rename_and_remove(self):
        with self.assertRaises(FileNotFoundError):
            qubes.utils.rename_file(self.dst, self.dst + ".2")
        open(self.dst, "w").close()
        qubes.utils.rename_file(self.dst, self.dst + ".2")
        self.assertTrue(os.path.exists(self.dst + ".2"))
        self.assertIs(qubes.utils.remove_file(self.dst + ".2"), True)
        self.assertIs(qubes.utils.remove_file(self.dst + ".2"), False)
        qubes.utils.fsync_path(self.tmp)


class TestCoroutineHelpers(unittest.IsolatedAsyncioTestCase):

    async def test_coro_maybe(self):
        async def five():
            return 5
        self.assertEqual(await qubes.utils.coro_maybe(five()), 5)
        self.assertEqual(await qubes.utils.coro_maybe(6), 6)

    async def test_void_coros_maybe_runs_all_then_raises(self):
        done = []

        async def ok(n):
            await asyncio.sleep(0.01)
            done.append(n)

        async def bad():
            raise OSError("bad")

        with self.assertRaises(OSError):
            await qubes.utils.void_coros_maybe([ok(1), bad(), None, ok(2)])
        self.assertEqual(sorted(done), [1, 2])
        self.assertIsNone(await qubes.utils.void_coros_maybe([1, "x"]))

    async def test_run_program(self):
        proc = await qubes.utils.run_program("true")
        self.assertEqual(proc.returncode, 0)
        with self.assertRaises(Exception):
            await qubes.utils.run_program("false")


class TestStorage(unittest.IsolatedAsyncioTestCase):

    async def test_import_data_none_means_current_size(self):
        pool = ListPool(name="p")
        app = fakes.FakeApp([pool], default_pool=pool)
        vm = fakes.FakeVM(app, "vm", volume_config={
            "private": {"name": "private", "save_on_stop": True,
                        "size": 42}})
        vm.init_storage()
        vol = vm.volumes["private"]
        vol.import_data = unittest.mock.Mock(return_value="/p")
        self.assertEqual(await vm.storage.import_data("private", None), "/p")
        vol.import_data.assert_called_once_with(42)
        vol.import_data_end = unittest.mock.Mock(return_value=None)
        await vm.storage.import_data_end("private", True)
        vol.import_data_end.assert_called_once_with(success=True)

    async def test_source_lookup_walks_template_chain(self):
        pool = ListPool(name="p")
        app = fakes.FakeApp([pool], default_pool=pool)
        tpl = fakes.FakeTemplateVM(app, "tpl",
                                   volume_config=fakes.TEMPLATE_VOLUMES)
        tpl.init_storage()
        appvm = fakes.FakeVM(app, "app", template=tpl,
                             volume_config=fakes.APPVM_VOLUMES)
        appvm.init_storage()
        disp = fakes.FakeDispVM(app, "disp1", template=appvm,
                                volume_config=fakes.DISPVM_VOLUMES)
        disp.init_storage()
        self.assertIs(disp.volumes["root"].source, tpl.volumes["root"])
        self.assertIs(disp.volumes["private"].source,
                      appvm.volumes["private"])
        self.assertEqual(disp.volumes["root"].size, 10 * 1024**3)


if __name__ == "__main__":
    unittest.main()
