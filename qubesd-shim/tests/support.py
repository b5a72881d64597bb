# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared test helpers: repository files, fixtures, a fake btrfs-vdod.

The fake daemon is a real asyncio Unix-socket server in a temp directory;
BTRFS_VDO_SOCKET points the shim at it, so the whole client path (framing,
limits, timeouts) is exercised without Go or Qubes.
"""

import asyncio
import glob
import json
import logging
import os
import shutil
import tempfile
import unittest
import unittest.mock

from qubes.tests import fakes

from qubes_btrfs_vdo import client
from qubes_btrfs_vdo.pool import BtrfsVdoPool

SHIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(SHIM_DIR)
STUB_DIR = os.path.join(REPO, "python-stub")
API_DIR = os.path.join(REPO, "api")
OPS_DIR = os.path.join(API_DIR, "testdata", "ops")
PATHS_JSON = os.path.join(API_DIR, "testdata", "paths.json")
# Generated from the Go types; BTRFS_VDO_SCHEMA may point elsewhere.
SCHEMA_JSON = os.environ.get("BTRFS_VDO_SCHEMA") or os.path.join(
    API_DIR, "schema.json"
)

GOLDEN_DIR_PATH = "/var/lib/qubes-vdo"
GOLDEN_POOL = "vdo"

# Expected warnings stay out of the test report; assertLogs still sees them.
logging.getLogger().addHandler(logging.NullHandler())


def load_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def golden(name):
    """api/testdata/ops/<name>.json, parsed."""
    return load_json(os.path.join(OPS_DIR, name + ".json"))


def golden_ops():
    """Every op that has a golden request file."""
    names = glob.glob(os.path.join(glob.escape(OPS_DIR), "*.request.json"))
    return sorted(os.path.basename(n)[: -len(".request.json")] for n in names)


def golden_errors():
    """(op, code, parsed reply) for every golden error file."""
    found = []
    for path in sorted(glob.glob(os.path.join(OPS_DIR, "*.error-*.json"))):
        base = os.path.basename(path)[: -len(".json")]
        op, code = base.split(".error-")
        found.append((op, code, load_json(path)))
    return found


def load_schema(test):
    """api/schema.json, or skip *test* while it has not been generated."""
    if not os.path.exists(SCHEMA_JSON):
        test.skipTest(
            f"{SCHEMA_JSON} not generated yet "
            "(go generate ./api)"
        )
    return load_json(SCHEMA_JSON)


def schema_problems(value, type_name, types, where="args"):
    """Strict check of a request against schema types: exact field sets."""
    if type_name.startswith("[]"):
        if not isinstance(value, list):
            return [f"{where} is not a list"]
        out = []
        for i, item in enumerate(value):
            out += schema_problems(item, type_name[2:], types, f"{where}[{i}]")
        return out
    if type_name.startswith("map[string]"):
        if not isinstance(value, dict):
            return [f"{where} is not an object"]
        out = []
        for key, item in value.items():
            out += schema_problems(item, type_name[len("map[string]"):], types, f"{where}[{key!r}]")
        return out
    simple = {
        "string": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    }
    if type_name in simple:
        return [] if simple[type_name](value) else [f"{where}: {value!r}"]
    fields = types[type_name]
    if not isinstance(value, dict):
        return [f"{where} is not an object"]
    if set(value) != set(fields):
        return [f"{where} fields {sorted(value)} != {sorted(fields)}"]
    out = []
    for name, field_type in fields.items():
        out += schema_problems(value[name], field_type, types,
                               f"{where}.{name}")
    return out


class Fixture:
    """The volumes the golden files show: pool vdo at /var/lib/qubes-vdo,
    template fedora, AppVMs work and personal based on it."""

    def __init__(self, dir_path=GOLDEN_DIR_PATH, **pool_options):
        pool_options.setdefault("revisions_to_keep", 1)
        self.pool = BtrfsVdoPool(
            name=GOLDEN_POOL, dir_path=dir_path, **pool_options
        )
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)
        self.template = fakes.FakeTemplateVM(
            self.app, "fedora", volume_config=fakes.TEMPLATE_VOLUMES
        )
        self.template.init_storage()
        self.work = fakes.FakeVM(
            self.app, "work", template=self.template,
            volume_config=fakes.APPVM_VOLUMES,
        )
        self.work.init_storage()
        self.personal = fakes.FakeVM(
            self.app, "personal", template=self.template,
            volume_config=fakes.APPVM_VOLUMES,
        )
        self.personal.init_storage()


CLOSE = object()  # close the connection without replying
HANG = object()  # never reply (until the test ends)


class FakeDaemon:
    """Records each request line and answers from a script.

    ``replies`` maps op -> a reply dict, raw bytes, CLOSE, HANG, or a
    callable(request) returning one of those. Ops not listed get their
    golden response file.
    """

    def __init__(self, path):
        self.path = path
        self.requests = []
        self.raw = []
        self.replies = {}
        self.delay = 0.0
        self.in_flight = {}
        self.max_in_flight = {}
        self.max_total_in_flight = 0
        self._stop = asyncio.Event()
        self._server = None

    async def start(self):
        self._server = await asyncio.start_unix_server(
            self._handle, path=self.path, limit=4 * client.MAX_FRAME_BYTES
        )

    async def close(self):
        self._stop.set()
        self._server.close()
        await self._server.wait_closed()

    @property
    def ops(self):
        return [req.get("op") for req in self.requests]

    def requests_for(self, op):
        return [req for req in self.requests if req.get("op") == op]

    def _reply_for(self, request):
        op = request.get("op")
        action = self.replies.get(op)
        if action is None:
            action = golden(op + ".response")
        if callable(action):
            action = action(request)
        return action

    async def _handle(self, reader, writer):
        try:
            line = await reader.readline()
            self.raw.append(line)
            try:
                request = json.loads(line)
            except ValueError:
                request = {"unparsed": line}
            self.requests.append(request)
            vid = ((request.get("args") or {}).get("volume") or {}).get("vid")
            self.in_flight[vid] = self.in_flight.get(vid, 0) + 1
            self.max_in_flight[vid] = max(
                self.max_in_flight.get(vid, 0), self.in_flight[vid]
            )
            self.max_total_in_flight = max(
                self.max_total_in_flight, sum(self.in_flight.values())
            )
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                action = self._reply_for(request)
            finally:
                self.in_flight[vid] -= 1
            if action is HANG:
                await self._stop.wait()
            elif action is not CLOSE:
                if isinstance(action, dict):
                    action = json.dumps(action).encode() + b"\n"
                writer.write(action)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


class DaemonTestCase(unittest.IsolatedAsyncioTestCase):
    """A fake daemon on a fresh socket, and the golden fixture."""

    async def asyncSetUp(self):
        self.tmp = tempfile.mkdtemp(prefix="btrfs-vdo-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.socket_path = os.path.join(self.tmp, "d.sock")
        env = unittest.mock.patch.dict(
            os.environ, {client.SOCKET_ENV: self.socket_path}
        )
        env.start()
        self.addCleanup(env.stop)
        self.daemon = FakeDaemon(self.socket_path)
        await self.daemon.start()
        self.fx = Fixture()

    async def asyncTearDown(self):
        await self.daemon.close()

    def reset(self):
        """Fresh fixture and an empty daemon log, for loops of subtests."""
        self.fx = Fixture()
        self.daemon.requests.clear()
        self.daemon.raw.clear()
        self.daemon.replies = {}

    def volume(self, vm, name):
        return getattr(self.fx, vm).volumes[name]
