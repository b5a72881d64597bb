# SPDX-License-Identifier: GPL-2.0-or-later
"""Whatever goes wrong between shim and daemon, qubesd gets a
StoragePoolException with a message saying what to check, never an
OSError, TimeoutError or JSON error (which would end as "Got empty
response from qubesd")."""

import asyncio
import json
import os
import socket
import unittest.mock

import qubes.exc

from qubes_btrfs_vdo import client
from tests import support

VID = "appvms/work/private"


def use_socket(path):
    return unittest.mock.patch.dict(os.environ, {client.SOCKET_ENV: path})


class TestTransportFailures(support.DaemonTestCase):

    async def assert_start_fails(self, *fragments):
        vol = self.volume("work", "private")
        with self.assertRaises(qubes.exc.StoragePoolException) as cm:
            await vol.start()
        message = str(cm.exception)
        self.assertTrue(message.startswith(f"Cannot start: {VID}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertIsInstance(cm.exception.__cause__, client.ClientError)
        return message

    async def test_no_socket(self):
        missing = os.path.join(self.tmp, "missing.sock")
        with use_socket(missing):
            await self.assert_start_fails(
                f"btrfs-vdo daemon is not reachable at {missing}",
                "systemctl status btrfs-vdod.socket",
            )

    async def test_connection_refused(self):
        # A bound socket nobody listens on: what a dead daemon leaves.
        path = os.path.join(self.tmp, "dead.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        with use_socket(path):
            message = await self.assert_start_fails(
                "Connection refused", "systemctl status btrfs-vdod.socket"
            )
        self.assertEqual(
            message,
            f"Cannot start: {VID}: btrfs-vdo daemon is not reachable at "
            f"{path}: Connection refused; is btrfs-vdod.socket running? "
            "(systemctl status btrfs-vdod.socket)",
        )

    async def test_socket_is_read_at_call_time(self):
        missing = os.path.join(self.tmp, "elsewhere.sock")
        with use_socket(missing):
            await self.assert_start_fails(missing)
        await self.volume("work", "private").start()
        self.assertEqual(self.daemon.ops, ["volume.start"])

    def test_default_socket(self):
        with unittest.mock.patch.dict(os.environ, clear=True):
            self.assertEqual(
                client.socket_path(), "/run/btrfs-vdo/btrfs-vdod.sock"
            )

    async def test_closed_without_reply(self):
        self.daemon.replies["volume.start"] = support.CLOSE
        await self.assert_start_fails("closed the connection without replying")

    async def test_reply_cut_short(self):
        self.daemon.replies["volume.start"] = b'{"ok": true, "res'
        await self.assert_start_fails("malformed reply", "cut short")

    async def test_reply_not_json(self):
        self.daemon.replies["volume.start"] = b"HTTP/1.0 400 Bad Request\n"
        await self.assert_start_fails("malformed reply", "not JSON")

    async def test_reply_not_an_object(self):
        self.daemon.replies["volume.start"] = b"[1, 2]\n"
        await self.assert_start_fails("malformed reply")

    async def test_reply_without_ok(self):
        self.daemon.replies["volume.start"] = {"result": {}}
        await self.assert_start_fails("malformed reply", '"ok"')

    async def test_result_missing_field(self):
        reply = support.golden("volume.start.response")
        del reply["result"]["size"]
        self.daemon.replies["volume.start"] = reply
        await self.assert_start_fails("malformed reply", "result.size")

    async def test_result_mistyped_field(self):
        reply = support.golden("volume.start.response")
        reply["result"]["revisions"][0]["id"] = 1
        self.daemon.replies["volume.start"] = reply
        await self.assert_start_fails("revisions[0].id")

    async def test_result_extra_field_tolerated(self):
        reply = support.golden("volume.start.response")
        reply["result"]["compressed"] = True
        self.daemon.replies["volume.start"] = reply
        await self.volume("work", "private").start()

    async def test_error_without_code(self):
        self.daemon.replies["volume.start"] = {
            "ok": False, "error": {"message": "x"}}
        await self.assert_start_fails("malformed reply", "error.code")

    async def test_oversized_reply(self):
        big = {"ok": True, "result": {"path": "x" * client.MAX_FRAME_BYTES}}
        self.daemon.replies["volume.export"] = big
        vol = self.volume("work", "private")
        with self.assertRaises(qubes.exc.StoragePoolException) as cm:
            await vol.export()
        self.assertIn("longer than 1048576 bytes", str(cm.exception))

    async def test_reply_of_exactly_the_limit_is_read(self):
        reply = {"ok": True, "result": {"path": ""}}
        pad = client.MAX_FRAME_BYTES - len(json.dumps(reply).encode())
        reply["result"]["path"] = "p" * pad
        self.assertEqual(len(json.dumps(reply).encode()),
                         client.MAX_FRAME_BYTES)
        self.daemon.replies["volume.export"] = reply
        path = await self.volume("work", "private").export()
        self.assertEqual(len(path), pad)

    async def test_query_timeout(self):
        self.daemon.replies["volume.info"] = support.HANG
        vol = self.volume("work", "private")
        with unittest.mock.patch.dict(client.TIMEOUTS, {"volume.info": 0.2}):
            with self.assertRaises(qubes.exc.StoragePoolException) as cm:
                await vol.refresh()
        self.assertIn("did not answer volume.info within 0.2 s",
                      str(cm.exception))
        self.assertIn("journalctl -u btrfs-vdod", str(cm.exception))

    async def test_call_timeout(self):
        self.daemon.replies["volume.stop"] = support.HANG
        args = support.golden("volume.stop.request")["args"]
        with self.assertRaises(client.DaemonUnavailable):
            await client.call("volume.stop", args, timeout=0.1)

    def test_timeouts(self):
        for op in ("hello", "status", "volume.info", "volume.verify"):
            self.assertEqual(client.timeout_for(op), client.QUERY_TIMEOUT)
        self.assertEqual(client.timeout_for("pool.setup"),
                         client.SETUP_TIMEOUT)
        for op in ("volume.start", "volume.stop", "volume.import_volume",
                   "volume.revert", "volume.export"):
            self.assertIsNone(client.timeout_for(op))

    async def test_unsupported_protocol(self):
        self.daemon.replies["volume.start"] = support.golden(
            "hello.error-unsupported_protocol")
        await self.assert_start_fails(
            "does not speak protocol 1",
            "protocol version 2 is not supported",
            "install matching versions",
        )

    async def test_hello_with_other_protocol(self):
        self.daemon.replies["hello"] = {
            "ok": True, "result": {"protocol": 2, "daemon": "9.0"}}
        with self.assertRaises(qubes.exc.StoragePoolException) as cm:
            await self.fx.pool.setup()
        self.assertIn("Cannot set up pool vdo: ", str(cm.exception))
        self.assertIn("speaks protocol 2", str(cm.exception))
        self.assertEqual(self.daemon.ops, ["hello"])

    async def test_pool_setup_unreachable(self):
        missing = os.path.join(self.tmp, "missing.sock")
        with use_socket(missing):
            with self.assertRaises(qubes.exc.StoragePoolException) as cm:
                await self.fx.pool.setup()
        self.assertTrue(str(cm.exception).startswith(
            "Cannot set up pool vdo: btrfs-vdo daemon is not reachable"))

    async def test_every_code_is_handled(self):
        codes = support.load_schema(self)["codes"]
        self.assertEqual(set(codes), set(client.CODE_HINTS))
        for code in codes:
            with self.subTest(code=code):
                self.reset()
                message = f"Cannot stop: {VID}: something ({code})"
                self.daemon.replies["volume.stop"] = {
                    "ok": False, "error": {"code": code, "message": message}}
                with self.assertRaises(qubes.exc.StoragePoolException) as cm:
                    await self.volume("work", "private").stop()
                self.assertIn(message, str(cm.exception))
                hint = client.CODE_HINTS[code]
                if not hint:
                    self.assertEqual(str(cm.exception), message)

    async def test_unknown_code_and_empty_message(self):
        self.daemon.replies["volume.stop"] = {
            "ok": False, "error": {"code": "frobnicated", "message": ""}}
        with self.assertRaises(qubes.exc.StoragePoolException) as cm:
            await self.volume("work", "private").stop()
        self.assertIn(f"Cannot stop: {VID}", str(cm.exception))
        self.assertIn("frobnicated", str(cm.exception))

    async def test_logging(self):
        vol = self.volume("work", "private")
        with self.assertLogs("qubes.storage.btrfs_vdo", "DEBUG") as logs:
            await vol.start()
        self.assertTrue(any(
            r.levelname == "DEBUG" and "volume.start" in r.getMessage()
            and VID in r.getMessage() and " s" in r.getMessage()
            for r in logs.records
        ), logs.output)
        self.daemon.replies["volume.stop"] = support.golden(
            "volume.stop.error-no_space")
        with self.assertLogs("qubes.storage.btrfs_vdo", "WARNING") as logs:
            with self.assertRaises(qubes.exc.StoragePoolException):
                await vol.stop()
        self.assertIn("no_space", logs.output[0])
        self.assertIn(VID, logs.output[0])

    async def test_wedged_daemon_does_not_block_the_loop(self):
        # A hanging call must leave qubesd's event loop free.
        self.daemon.replies["volume.stop"] = support.HANG
        stop = asyncio.ensure_future(self.volume("work", "private").stop())
        await asyncio.sleep(0.05)
        self.assertFalse(stop.done())
        self.assertEqual(self.volume("work", "private").size, 2147483648)
        stop.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await stop


class TestVolumeCalls(support.DaemonTestCase):
    """What each volume method sends, beyond the golden fixtures."""

    async def test_revert_without_revision_sends_empty(self):
        await self.volume("work", "private").revert()
        self.assertEqual(self.daemon.requests[-1]["args"]["revision"], "")

    async def test_properties_are_read_at_each_call(self):
        # qubesd assigns rw and revisions_to_keep without telling us.
        vol = self.volume("work", "private")
        vol.rw = False
        vol.revisions_to_keep = -1
        await vol.start()
        sent = self.daemon.requests[-1]["args"]["volume"]
        self.assertIs(sent["rw"], False)
        self.assertEqual(sent["revisions_to_keep"], -1)

    async def test_import_volume_of_non_save_on_stop_does_nothing(self):
        root = self.volume("work", "root")
        src = self.volume("personal", "root")
        self.assertIs(await root.import_volume(src), root)
        self.assertEqual(self.daemon.requests, [])

    async def test_import_volume_ends_export_after_failure(self):
        self.daemon.replies["volume.import_volume"] = support.golden(
            "volume.stop.error-no_space")
        dst = self.volume("work", "private")
        src = self.volume("personal", "private")
        with self.assertRaises(qubes.exc.StoragePoolException) as cm:
            await dst.import_volume(src)
        self.assertIn("no space left", str(cm.exception))
        self.assertEqual(
            self.daemon.ops,
            ["volume.export", "volume.import_volume", "volume.export_end"],
        )

    async def test_import_volume_from_another_driver(self):
        class ForeignVolume:
            vid = "other/vol"
            ended = None

            def export(self):  # a sync export, as coro_maybe allows
                return "/dev/mapper/foreign"

            async def export_end(self, path):
                self.ended = path

        src = ForeignVolume()
        await self.volume("work", "private").import_volume(src)
        sent = self.daemon.requests_for("volume.import_volume")[0]["args"]
        self.assertEqual(sent["source_path"], "/dev/mapper/foreign")
        self.assertEqual(src.ended, "/dev/mapper/foreign")

    async def test_import_volume_source_export_oserror(self):
        class BrokenVolume:
            vid = "other/vol"

            async def export(self):
                raise PermissionError(13, "Permission denied")

        with self.assertRaises(qubes.exc.StoragePoolException) as cm:
            await self.volume("work", "private").import_volume(BrokenVolume())
        self.assertIn("cannot export other/vol", str(cm.exception))

    async def test_bad_size_arguments(self):
        vol = self.volume("work", "private")
        for method in (vol.resize, vol.import_data):
            with self.assertRaises(qubes.exc.StoragePoolException):
                await method("big")
        self.assertEqual(self.daemon.requests, [])

    async def test_one_call_at_a_time_per_volume(self):
        self.daemon.delay = 0.05
        private = self.volume("work", "private")
        volatile = self.volume("work", "volatile")
        await asyncio.gather(private.start(), private.stop(), volatile.start())
        self.assertEqual(self.daemon.max_in_flight[VID], 1)
        # Different volumes are not serialized against each other.
        self.assertEqual(self.daemon.max_total_in_flight, 2)
        self.assertEqual(len(self.daemon.requests), 3)
