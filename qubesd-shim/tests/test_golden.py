# SPDX-License-Identifier: GPL-2.0-or-later
"""Each shim method sends exactly the golden request of its op and uses
the golden response; each golden error reaches the user unchanged."""

import qubes.exc

from qubes_btrfs_vdo import client, ops
from tests import support

PERSONAL_IMG = "/var/lib/qubes-vdo/appvms/personal/private.img"
WORK_IMG = "/var/lib/qubes-vdo/appvms/work/private.img"


# One driver per op: run the shim the way qubesd would, then check that
# the shim used what the daemon answered. Each returns the op's request
# as recorded by the fake daemon.

async def drive_hello(test):
    test.assertEqual(await client.hello(), "0.1.0")
    return test.daemon.requests_for("hello")[-1]


async def drive_pool_setup(test):
    pool = test.fx.pool
    test.assertIs(await pool.setup(), pool)
    test.assertEqual(test.daemon.ops, ["hello", "pool.setup"])
    return test.daemon.requests_for("pool.setup")[-1]


async def drive_create(test):
    vol = test.volume("work", "private")
    test.assertIs(await vol.create(), vol)
    return test.daemon.requests[-1]


async def drive_remove(test):
    vol = test.volume("work", "private")
    test.assertIn("appvms/work/private", test.fx.pool.volumes)
    test.assertIs(await vol.remove(), vol)
    test.assertNotIn("appvms/work/private", test.fx.pool.volumes)
    return test.daemon.requests[-1]


async def drive_verify(test):
    vol = test.volume("work", "root")
    test.assertIs(await vol.verify(), True)
    return test.daemon.requests[-1]


async def drive_start(test):
    vol = test.volume("work", "private")
    test.assertIs(await vol.start(), vol)
    return test.daemon.requests[-1]


async def drive_stop(test):
    vol = test.volume("work", "private")
    test.assertIs(await vol.stop(), vol)
    return test.daemon.requests[-1]


async def drive_info(test):
    vol = test.volume("work", "private")
    state = await vol.refresh()
    test.assertEqual(set(state), {"size", "usage", "dirty", "revisions"})
    test.assertEqual(state["size"], vol._size)
    return test.daemon.requests[-1]


async def drive_revert(test):
    vol = test.volume("work", "private")
    test.assertIs(await vol.revert("1"), vol)
    return test.daemon.requests[-1]


async def drive_resize(test):
    vol = test.volume("work", "private")
    test.assertIs(await vol.resize(4294967296), vol)
    test.assertEqual(vol._size, 4294967296)
    test.assertEqual(vol.size, 4294967296)  # no files: the recorded size
    return test.daemon.requests[-1]


async def drive_export(test):
    vol = test.volume("work", "private")
    test.assertEqual(await vol.export(), WORK_IMG)
    return test.daemon.requests[-1]


async def drive_export_end(test):
    vol = test.volume("work", "private")
    await vol.export_end(WORK_IMG)
    return test.daemon.requests[-1]


async def drive_import_data(test):
    vol = test.volume("work", "private")
    path = await vol.import_data(vol.size)
    test.assertEqual(
        path, "/var/lib/qubes-vdo/appvms/work/private-import.img"
    )
    return test.daemon.requests[-1]


async def drive_import_data_end(test):
    vol = test.volume("work", "private")
    test.assertIs(await vol.import_data_end(success=True), vol)
    return test.daemon.requests[-1]


async def drive_import_volume(test):
    def export(request):
        vid = request["args"]["volume"]["vid"]
        test.assertEqual(vid, "appvms/personal/private")
        return {"ok": True, "result": {"path": PERSONAL_IMG}}

    test.daemon.replies["volume.export"] = export
    dst = test.volume("work", "private")
    src = test.volume("personal", "private")
    test.assertIs(await dst.import_volume(src), dst)
    test.assertEqual(
        test.daemon.ops,
        ["volume.export", "volume.import_volume", "volume.export_end"],
    )
    end = test.daemon.requests_for("volume.export_end")[0]["args"]
    test.assertEqual(end["volume"]["vid"], "appvms/personal/private")
    test.assertEqual(end["path"], PERSONAL_IMG)
    return test.daemon.requests_for("volume.import_volume")[0]


DRIVERS = {
    "hello": drive_hello,
    "pool.setup": drive_pool_setup,
    "volume.create": drive_create,
    "volume.remove": drive_remove,
    "volume.verify": drive_verify,
    "volume.start": drive_start,
    "volume.stop": drive_stop,
    "volume.info": drive_info,
    "volume.revert": drive_revert,
    "volume.resize": drive_resize,
    "volume.export": drive_export,
    "volume.export_end": drive_export_end,
    "volume.import_data": drive_import_data,
    "volume.import_data_end": drive_import_data_end,
    "volume.import_volume": drive_import_volume,
}

# Every op but the btrfs-vdo CLI's administration ones.
SHIM_OPS = sorted(set(ops.OPS) - ops.ADMIN_OPS)

# Error files of ops qubesd never calls directly are driven through the
# method that sends them.
ERROR_DRIVERS = dict(DRIVERS, hello=drive_pool_setup)


class TestGoldenRequests(support.DaemonTestCase):

    def test_every_op_has_a_driver(self):
        self.assertEqual(set(SHIM_OPS), set(DRIVERS))
        self.assertEqual(set(support.golden_ops()), set(ops.OPS))

    async def check_op(self, op):
        request = await DRIVERS[op](self)
        self.assertEqual(request, support.golden(op + ".request"))
        # One line per request, nothing after it.
        raw = [r for r in self.daemon.raw if b'"op":"%s"' % op.encode()]
        self.assertTrue(raw)
        for line in raw:
            self.assertEqual(line.count(b"\n"), 1)
            self.assertTrue(line.endswith(b"\n"))

    async def test_volume_state_size_is_kept(self):
        # Every op answered with a VolumeState refreshes the recorded size
        # (a volatile volume's manual resize survives this way).
        def bigger(request):
            reply = support.golden(request["op"] + ".response")
            reply["result"]["size"] = 123 * 4096
            return reply

        for op, driver in DRIVERS.items():
            state_type = support.golden(op + ".response")["result"]
            if not op.startswith("volume.") or "size" not in state_type:
                continue
            if op in ("volume.resize", "volume.remove"):
                continue  # checked by their own drivers
            with self.subTest(op=op):
                self.reset()
                self.daemon.replies = {op: bigger}
                if op == "volume.import_volume":
                    self.daemon.replies["volume.export"] = {
                        "ok": True, "result": {"path": PERSONAL_IMG}}
                request = await driver(self)
                vid = request["args"]["volume"]["vid"]
                vol = self.fx.pool.volumes[vid]
                self.assertEqual(vol._size, 123 * 4096)
                self.assertEqual(vol.size, 123 * 4096)

    async def test_each_op_sends_its_golden_request(self):
        for op in SHIM_OPS:
            with self.subTest(op=op):
                self.reset()
                await self.check_op(op)

    async def test_requests_match_schema(self):
        schema = support.load_schema(self)
        for op in DRIVERS:
            self.reset()
            await DRIVERS[op](self)
            for request in self.daemon.requests:
                self.assertEqual(set(request), {"v", "op", "args"})
                self.assertEqual(request["v"], schema["protocol"])
                args_type = schema["ops"][request["op"]]["args"]
                self.assertEqual(
                    support.schema_problems(
                        request["args"], args_type, schema["types"]
                    ),
                    [],
                    request,
                )


class TestGoldenErrors(support.DaemonTestCase):

    async def test_golden_errors(self):
        errors = support.golden_errors()
        self.assertTrue(errors)
        for op, code, reply in errors:
            with self.subTest(op=op, code=code):
                self.reset()
                self.daemon.replies = {op: reply}
                message = reply["error"]["message"]
                with self.assertRaises(qubes.exc.StoragePoolException) as cm:
                    await ERROR_DRIVERS[op](self)
                if client.CODE_HINTS[code] or code == "unsupported_protocol":
                    # Mismatch and daemon-side faults get a pointer added.
                    self.assertIn(message, str(cm.exception))
                    self.assertIn(client.CODE_HINTS[code], str(cm.exception))
                else:
                    self.assertEqual(str(cm.exception), message)

    async def test_invalid_vid_is_refused_by_the_daemon(self):
        reply = support.golden("volume.start.error-invalid_name")
        self.daemon.replies = {"volume.start": reply}
        vol = self.fx.pool.init_volume(
            self.fx.work,
            {"name": "private", "vid": "appvms/../../etc", "rw": True,
             "save_on_stop": True, "size": 1024},
        )
        with self.assertRaises(qubes.exc.StoragePoolException) as cm:
            await vol.start()
        self.assertEqual(str(cm.exception), reply["error"]["message"])
        sent = self.daemon.requests[-1]["args"]["volume"]["vid"]
        self.assertEqual(sent, "appvms/../../etc")
        # Sync queries stay inside the pool: nothing on disk for it.
        self.assertIsNone(vol.path)
        self.assertEqual(vol.size, 1024)
        self.assertEqual(vol.usage, 0)
        self.assertEqual(vol.revisions, {})
        self.assertFalse(vol.is_dirty())
        with self.assertRaises(qubes.exc.StoragePoolException):
            vol.block_device()
