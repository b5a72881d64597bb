# SPDX-License-Identifier: GPL-2.0-or-later
"""The shim under qubesd's own call sequences (the stub's Storage, which
reproduces qubes.storage.Storage's orderings)."""

import collections
import os
import unittest.mock

import qubes.exc
import qubes.storage

from tests import support


class TestStorageSequences(support.DaemonTestCase):

    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.state_dir = os.path.join(self.tmp, "run")
        os.mkdir(self.state_dir)
        patch = unittest.mock.patch.object(
            qubes.storage, "VOLUME_STATE_DIR", self.state_dir)
        patch.start()
        self.addCleanup(patch.stop)

    def counts(self):
        return collections.Counter(self.daemon.ops)

    def vids(self, op):
        return sorted(r["args"]["volume"]["vid"]
                      for r in self.daemon.requests_for(op))

    def state_files(self):
        return sorted(os.listdir(self.state_dir))

    async def test_start_then_stop(self):
        storage = self.fx.work.storage
        await storage.start()
        self.assertEqual(self.vids("volume.start"), [
            "appvms/work/private", "appvms/work/root", "appvms/work/volatile"])
        root = self.daemon.requests_for("volume.start")
        root = [r for r in root
                if r["args"]["volume"]["vid"] == "appvms/work/root"][0]
        self.assertEqual(root["args"]["volume"]["source"],
                         "vm-templates/fedora/root")
        self.assertEqual(self.state_files(), [
            "volume-running-vdo:appvms-work-private",
            "volume-running-vdo:appvms-work-root",
            "volume-running-vdo:appvms-work-volatile",
        ])
        self.assertTrue(self.fx.work.volumes["private"].is_running())
        await storage.stop()
        self.assertEqual(self.counts()["volume.stop"], 3)
        self.assertEqual(self.state_files(), [])

    async def test_failed_start_writes_no_state_files(self):
        reply = support.golden("volume.start.error-invalid_name")
        self.daemon.replies["volume.start"] = (
            lambda r: reply if r["args"]["volume"]["vid"].endswith("root")
            else support.golden("volume.start.response"))
        with self.assertRaises(qubes.exc.StoragePoolException):
            await self.fx.work.storage.start()
        self.assertEqual(self.counts()["volume.start"], 3)
        self.assertEqual(self.state_files(), [])

    async def test_source_with_snapshots_disabled_running(self):
        tpl_root = self.fx.template.volumes["root"]
        tpl_root.revisions_to_keep = -1
        open(tpl_root.state_file, "w").close()
        with self.assertRaises(qubes.exc.QubesVMError) as cm:
            await self.fx.work.storage.start()
        self.assertIn("vm-templates/fedora/root is running", str(cm.exception))
        self.assertEqual(self.daemon.requests, [])

    async def test_create_rolls_back(self):
        self.daemon.replies["volume.create"] = (
            lambda r: support.golden("volume.stop.error-no_space")
            if r["args"]["volume"]["vid"].endswith("private")
            else support.golden("volume.create.response"))
        with self.assertRaises(qubes.exc.StoragePoolException):
            await self.fx.work.storage.create()
        counts = self.counts()
        self.assertEqual(counts["volume.create"], 3)
        self.assertEqual(counts["volume.stop"], 3)
        self.assertEqual(counts["volume.remove"], 3)
        self.assertNotIn("appvms/work/private", self.fx.pool.volumes)

    async def test_remove_stops_first(self):
        await self.fx.work.storage.remove()
        ops = self.daemon.ops
        self.assertEqual(collections.Counter(ops[:3]), {"volume.stop": 3})
        self.assertEqual(collections.Counter(ops[3:]), {"volume.remove": 3})
        for name in ("root", "private", "volatile"):
            self.assertNotIn(f"appvms/work/{name}", self.fx.pool.volumes)
        self.assertIn("appvms/personal/private", self.fx.pool.volumes)

    async def test_failed_remove_keeps_volume_listed(self):
        self.daemon.replies["volume.remove"] = {
            "ok": False, "error": {"code": "busy", "message": "Cannot remove"}}
        vol = self.fx.work.volumes["private"]
        with self.assertRaises(qubes.exc.StoragePoolException):
            await vol.remove()
        self.assertIn(vol.vid, self.fx.pool.volumes)

    async def test_verify(self):
        self.fx.work.dir_path = self.tmp
        self.assertIs(await self.fx.work.storage.verify(), True)
        self.assertEqual(self.counts()["volume.verify"], 3)

    async def test_import_data_default_size(self):
        storage = self.fx.work.storage
        path = await storage.import_data("private", None)
        self.assertTrue(path.endswith("private-import.img"))
        sent = self.daemon.requests_for("volume.import_data")[0]["args"]
        self.assertEqual(sent["size"], 2147483648)
        await storage.import_data_end("private", False)
        sent = self.daemon.requests_for("volume.import_data_end")[0]["args"]
        self.assertIs(sent["success"], False)

    async def test_import_volume_refused_while_source_runs(self):
        src = self.fx.personal.volumes["private"]
        src.revisions_to_keep = -1
        open(src.state_file, "w").close()
        with self.assertRaises(qubes.exc.StoragePoolException):
            await self.fx.work.storage.import_volume(
                self.fx.work.volumes["private"], src)
        self.assertEqual(self.daemon.requests, [])

    async def test_clone_through_storage(self):
        src = self.fx.personal.volumes["private"]
        dst = self.fx.work.volumes["private"]
        await self.fx.work.storage.import_volume(dst, src)
        self.assertEqual(self.daemon.ops, [
            "volume.export", "volume.import_volume", "volume.export_end"])
        self.assertIn(("domain-import-volume",
                       {"name": "private", "source": src}),
                      self.fx.work.events)

    async def test_resize(self):
        await self.fx.work.storage.resize("private", 4294967296)
        self.assertEqual(self.fx.work.volumes["private"].size, 4294967296)

    async def test_revert_checks_revision_first(self):
        fx = support.Fixture(dir_path=self.tmp)
        storage = fx.work.storage
        with self.assertRaises(KeyError):
            await storage.revert("private", "1")
        vid_dir = os.path.join(self.tmp, "appvms", "work")
        os.makedirs(vid_dir)
        open(os.path.join(vid_dir, "private.img.1@2026-11-20T09:15:02Z"),
             "w").close()
        await storage.revert("private", "1")
        self.assertEqual(self.daemon.ops, ["volume.revert"])
        self.assertEqual(
            self.daemon.requests[0]["args"]["revision"], "1")

    async def test_set_revisions_to_keep_is_not_forwarded(self):
        storage = self.fx.work.storage
        storage.set_revisions_to_keep("private", 3)
        self.assertEqual(self.fx.work.volumes["private"].revisions_to_keep, 3)
        self.fx.work.running = True
        with self.assertRaises(qubes.exc.QubesVMNotHaltedError):
            storage.set_revisions_to_keep("private", -1)
        with self.assertRaises(qubes.exc.QubesValueError):
            storage.set_revisions_to_keep("private", -2)
        self.assertEqual(self.daemon.requests, [])
        await self.fx.work.volumes["private"].stop()
        sent = self.daemon.requests[0]["args"]["volume"]
        self.assertEqual(sent["revisions_to_keep"], 3)

    async def test_startup_stop_of_halted_vms(self):
        # qubesd's app.stop_storage(): stop() on every VM not running,
        # committing whatever a crash left dirty.
        for vm in (self.fx.template, self.fx.work, self.fx.personal):
            await vm.storage.stop()
        self.assertEqual(self.counts()["volume.stop"], 9)
