# SPDX-License-Identifier: GPL-2.0-or-later
"""BtrfsVdoPool: options as strings, config, init_volume without I/O."""

import builtins
import inspect
import os
import socket
import tempfile
import unittest
import unittest.mock

import qubes.exc
import qubes.storage
from qubes.tests import fakes

from qubes_btrfs_vdo.pool import BtrfsVdoPool
from qubes_btrfs_vdo.volume import BtrfsVdoVolume

NOWHERE = "/nonexistent/btrfs-vdo-test-pool"


def make_pool(**options):
    options.setdefault("name", "vdo")
    options.setdefault("dir_path", NOWHERE)
    return BtrfsVdoPool(**options)


def make_vm(pool, name="work", cls=fakes.FakeVM, **kwargs):
    app = fakes.FakeApp([pool], default_pool=pool)
    return cls(app, name, **kwargs)


class TestOptions(unittest.TestCase):

    def test_signature_is_file_reflinks(self):
        # admin.pool.Add derives the accepted -o options from this.
        params = inspect.signature(BtrfsVdoPool.__init__).parameters
        options = {
            p.name: p.default is inspect.Parameter.empty
            for p in params.values()
            if p.name not in ("self", "name", "kwargs")
        }
        self.assertEqual(options, {
            "dir_path": True,
            "revisions_to_keep": False,
            "setup_check": False,
            "ephemeral_volatile": False,
        })

    def test_string_options(self):
        pool = make_pool(revisions_to_keep="2", setup_check="False",
                         ephemeral_volatile="False")
        self.assertIs(pool.ephemeral_volatile, False)
        self.assertIs(pool._setup_check, False)
        vol = pool.init_volume(make_vm(pool), {
            "name": "private", "save_on_stop": True, "rw": True,
            "size": "2147483648"})
        self.assertEqual(vol.revisions_to_keep, 2)
        self.assertEqual(vol.size, 2147483648)
        pool = make_pool(ephemeral_volatile="True", setup_check="1")
        self.assertIs(pool.ephemeral_volatile, True)
        self.assertIs(pool._setup_check, True)
        volatile = pool.init_volume(make_vm(pool), {
            "name": "volatile", "rw": True, "size": 10})
        self.assertIs(volatile.ephemeral, True)

    def test_bad_options(self):
        for options in ({"revisions_to_keep": "abc"},
                        {"revisions_to_keep": "-2"},
                        {"setup_check": "maybe"},
                        {"ephemeral_volatile": "yes"},
                        {"dir_path": ""}):
            with self.subTest(options=options):
                with self.assertRaises(qubes.exc.QubesValueError):
                    make_pool(**options)

    def test_config(self):
        pool = make_pool(revisions_to_keep="3", ephemeral_volatile="True",
                         dir_path="/var/lib/qubes-vdo/")
        config = pool.config
        self.assertEqual(config, {
            "name": "vdo",
            "dir_path": "/var/lib/qubes-vdo",
            "driver": "btrfs-vdo",
            "revisions_to_keep": "3",
            "ephemeral_volatile": True,
        })
        self.assertNotIn(None, config.values())
        # What qubes.xml stores is enough to rebuild the same pool.
        stored = qubes.storage._sanitize_config(config)
        del stored["driver"]
        self.assertEqual(BtrfsVdoPool(**stored).config, {
            **config, "ephemeral_volatile": True})

    def test_file_reflink_pool_converts(self):
        # qubes.xml's file-reflink attributes, driver= removed.
        attrs = {"name": "varlibqubes", "dir_path": "/var/lib/qubes",
                 "revisions_to_keep": "1", "ephemeral_volatile": "False"}
        pool = BtrfsVdoPool(**attrs)
        vm = make_vm(pool, "fedora", cls=fakes.FakeTemplateVM)
        vol = pool.init_volume(vm, {"name": "root", "save_on_stop": True,
                                    "rw": True, "size": 1})
        self.assertEqual(vol.vid, "vm-templates/fedora/root")
        self.assertEqual(vol.path,
                         "/var/lib/qubes/vm-templates/fedora/root-dirty.img")

    def test_base_behavior_kept(self):
        pool = make_pool()
        self.assertEqual(pool, "vdo")
        self.assertEqual(str(pool), "vdo")
        self.assertEqual(hash(pool), hash("vdo"))
        self.assertEqual(pool.private_img_size, 2 * 1024**3)
        self.assertEqual(pool.root_img_size, 10 * 1024**3)
        self.assertEqual(pool.driver, "btrfs-vdo")


class TestInitVolume(unittest.TestCase):

    def test_no_io(self):
        forbidden = unittest.mock.Mock(side_effect=AssertionError("I/O"))
        patches = [
            unittest.mock.patch.object(os, name, forbidden)
            for name in ("stat", "lstat", "listdir", "scandir", "mkdir",
                         "makedirs", "open", "statvfs", "access")
        ] + [
            unittest.mock.patch.object(builtins, "open", forbidden),
            unittest.mock.patch.object(socket, "socket", forbidden),
        ]
        for patch in patches:
            patch.start()
            self.addCleanup(patch.stop)
        pool = make_pool(revisions_to_keep="2")
        app = fakes.FakeApp([pool], default_pool=pool)
        template = fakes.FakeTemplateVM(
            app, "fedora", volume_config=fakes.TEMPLATE_VOLUMES)
        template.volumes = {
            name: pool.init_volume(template, dict(conf))
            for name, conf in template.volume_config.items()
        }
        vm = fakes.FakeVM(app, "work", template=template)
        root = pool.init_volume(vm, {
            "name": "root", "snap_on_start": True, "rw": True,
            "source": template.volumes["root"], "size": 10})
        for patch in patches:
            patch.stop()
        self.assertFalse(forbidden.called)
        self.assertFalse(os.path.exists(NOWHERE))
        self.assertEqual(root.vid, "appvms/work/root")
        self.assertIs(root.pool, pool)

    def test_fills_config(self):
        pool = make_pool(revisions_to_keep=3)
        vm = make_vm(pool)
        config = {"name": "private", "save_on_stop": True, "rw": True}
        vol = pool.init_volume(vm, config)
        self.assertIs(config["pool"], pool)
        self.assertEqual(config["vid"], "appvms/work/private")
        self.assertEqual(config["revisions_to_keep"], 3)
        self.assertIsInstance(vol, BtrfsVdoVolume)
        self.assertEqual(vol.revisions_to_keep, 3)
        # Explicit values win.
        vol = pool.init_volume(vm, {"name": "private", "vid": "appvms/x/y",
                                    "revisions_to_keep": "0"})
        self.assertEqual((vol.vid, vol.revisions_to_keep), ("appvms/x/y", 0))

    def test_reinit_replaces(self):
        pool = make_pool()
        vm = make_vm(pool)
        first = pool.init_volume(vm, {"name": "private"})
        second = pool.init_volume(vm, {"name": "private", "rw": True})
        self.assertIsNot(first, second)
        self.assertIs(pool.get_volume("appvms/work/private"), second)
        self.assertIs(pool.volumes["appvms/work/private"], second)
        self.assertEqual(pool.list_volumes(), [second])

    def test_origin_snapshot_not_supported(self):
        pool = make_pool()
        vm = make_vm(pool)
        source = pool.init_volume(vm, {"name": "src", "save_on_stop": True})
        with self.assertRaises(NotImplementedError):
            pool.init_volume(vm, {"name": "x", "save_on_stop": True,
                                  "snap_on_start": True, "source": source})
        self.assertNotIn("appvms/work/x", pool.volumes)

    def test_unknown_prefix(self):
        pool = make_pool()
        vm = make_vm(pool)
        vm.dir_path_prefix = "servicevms"
        with self.assertRaises(AssertionError):
            pool.init_volume(vm, {"name": "private"})

    def test_get_volume_missing(self):
        pool = make_pool()
        with self.assertRaises(KeyError):
            pool.get_volume("appvms/nope/private")
        with self.assertRaises(KeyError):
            pool.volumes["appvms/nope/private"]
        self.assertNotIn("appvms/nope/private", pool.volumes)

    def test_unknown_config_key_is_a_type_error(self):
        pool = make_pool()
        with self.assertRaises(TypeError):
            pool.init_volume(make_vm(pool), {"name": "private", "bogus": 1})

    def test_volume_config_round_trip(self):
        pool = make_pool()
        vm = make_vm(pool)
        vol = pool.init_volume(vm, {"name": "private", "save_on_stop": True,
                                    "rw": True, "size": 2147483648,
                                    "revisions_to_keep": 2})
        # qubes.xml: bools come back as bools, the rest as strings.
        stored = {
            k: v if isinstance(v, bool) else str(v)
            for k, v in vol.config.items()
        }
        again = pool.init_volume(vm, stored)
        self.assertEqual(again.config, vol.config)


class TestPoolQueries(unittest.IsolatedAsyncioTestCase):

    def test_usage_details_missing_dir(self):
        pool = make_pool()
        self.assertEqual(pool.usage_details, {})
        self.assertIsNone(pool.size)
        self.assertIsNone(pool.usage)

    def test_usage_details(self):
        with tempfile.TemporaryDirectory() as tmp:
            pool = make_pool(dir_path=tmp)
            details = pool.usage_details
            self.assertEqual(set(details), {"data_size", "data_usage"})
            self.assertGreater(details["data_size"], 0)
            self.assertLessEqual(details["data_usage"], details["data_size"])
            self.assertEqual(pool.size, details["data_size"])

    def test_included_in(self):
        pool = make_pool(name="vdo", dir_path="/var/lib/qubes/vdo")
        outer = make_pool(name="varlibqubes", dir_path="/var/lib/qubes")
        other = make_pool(name="other", dir_path="/srv")
        app = fakes.FakeApp([pool, other])
        self.assertIsNone(pool.included_in(app))
        app.add_pool(outer)
        self.assertIs(pool.included_in(app), outer)

    async def test_destroy_is_a_noop(self):
        pool = make_pool()
        self.assertIsNone(await pool.destroy())
