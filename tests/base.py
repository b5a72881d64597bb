# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared set-up of the integration tests: one loop-mounted btrfs and one
daemon per test class, a fresh pool directory per test, qubesd's fake app
and VMs from python-stub, and the real shim."""

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import tempfile
import unittest

import qubes.storage
from qubes.tests import fakes

from qubes_btrfs_vdo.pool import BtrfsVdoPool
from tests import harness

MiB = 1 << 20


@contextlib.contextmanager
def quiet():
    """Silence the log records (the shim's warnings, the stand-in's
    tracebacks, asyncio's failed tasks) of operations meant to fail."""
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        gc.collect()  # failed tasks complain when collected: do it now
        logging.disable(logging.NOTSET)


class IntegrationCase(unittest.TestCase):
    fs_size = 2 << 30

    @classmethod
    def setUpClass(cls):
        cls.fs = harness.LoopBtrfs(cls.fs_size)
        cls.addClassCleanup(cls.fs.close)
        cls.daemon = cls.make_daemon()
        cls.addClassCleanup(cls.daemon.close)
        cls.state_dir = tempfile.mkdtemp(prefix=harness.PREFIX + "state-", dir="/var/tmp")
        cls.addClassCleanup(shutil.rmtree, cls.state_dir, True)
        cls.qubes_dir = os.path.join(cls.state_dir, "var-lib-qubes")

    @classmethod
    def make_daemon(cls):
        """The daemon the class's tests talk to."""
        return harness.Daemon()

    def setUp(self):
        self._env = os.environ.get("BTRFS_VDO_SOCKET")
        os.environ["BTRFS_VDO_SOCKET"] = self.daemon.socket
        self._state_dir = qubes.storage.VOLUME_STATE_DIR
        qubes.storage.VOLUME_STATE_DIR = self.state_dir
        self.dir_path = os.path.join(self.fs.mnt, self.id().rsplit(".", 1)[-1])
        self.pool = self.make_pool()
        self.run_async(self.pool.setup())
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)

    def tearDown(self):
        qubes.storage.VOLUME_STATE_DIR = self._state_dir
        if self._env is None:
            os.environ.pop("BTRFS_VDO_SOCKET", None)
        else:
            os.environ["BTRFS_VDO_SOCKET"] = self._env
        result = getattr(self._outcome, "result", None)
        if result and any(test is self for test, _ in result.failures + result.errors):
            print(f"\n--- daemon log ({self.id()}) ---\n{self.daemon.log()[-6000:]}")

    def use_pool(self, name, **options):
        """Switch to a fresh pool directory of this test, for tests that
        need several."""
        self.dir_path = os.path.join(self.fs.mnt, self.id().rsplit(".", 1)[-1] + "-pools", name)
        os.makedirs(os.path.dirname(self.dir_path), exist_ok=True)
        self.pool = self.make_pool(**options)
        self.run_async(self.pool.setup())
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)

    def make_pool(self, **options):
        """A pool built the way qubes.xml builds it: every option a string."""
        options.setdefault("revisions_to_keep", "1")
        return BtrfsVdoPool(name="vdo", dir_path=self.dir_path, **options)

    @staticmethod
    def run_async(coro):
        return asyncio.run(coro)

    def make_template(self, name="fedora"):
        vm = fakes.FakeTemplateVM(self.app, name, volume_config=fakes.TEMPLATE_VOLUMES,
                                  base_dir=self.qubes_dir)
        os.makedirs(vm.dir_path, exist_ok=True)
        vm.init_storage()
        self.run_async(vm.storage.create())
        return vm

    def make_appvm(self, name, template, cls=fakes.FakeVM, volumes=fakes.APPVM_VOLUMES):
        vm = cls(self.app, name, template=template, volume_config=volumes,
                 base_dir=self.qubes_dir)
        os.makedirs(vm.dir_path, exist_ok=True)
        vm.init_storage()
        self.run_async(vm.storage.create())
        return vm

    def start(self, vm):
        self.run_async(vm.storage.verify())
        self.run_async(vm.storage.start())
        vm.running = True

    def stop(self, vm):
        vm.running = False
        self.run_async(vm.storage.stop())

    def wait_jobs(self):
        """Wait for the optimizer's background jobs (and the precaches they
        make) to finish."""
        harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, "jobs", "--wait")

    def path(self, *parts):
        return os.path.join(self.dir_path, *parts)

    def write_volume(self, vm, volume, offset, data):
        """Write into a running volume's block device, as the VM would."""
        harness.write_at(vm.volumes[volume].block_device().path, offset, data)

    def read_volume(self, vm, volume, offset, length):
        with open(vm.volumes[volume].block_device().path, "rb") as f:
            f.seek(offset)
            return f.read(length)
