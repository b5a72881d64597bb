# SPDX-License-Identifier: GPL-2.0-or-later
"""A load of AppVMs sharing one template, cycling start/stop through the
shim while the optimizer compresses what they commit; used by
tests/test_load.py with moderate numbers and by bench/soak with large ones.

Every cycle of a VM writes one of its private volume's regions and, in
the next cycle, reads that region back, so a lost or mixed commit is seen
at once; at the end every region is checked in the committed image.
"""

import asyncio
import json
import os
import random
import statistics
import time

from qubes.tests import fakes

from qubes_btrfs_vdo import client
from qubes_btrfs_vdo.pool import BtrfsVdoPool
from tests import harness

MiB = 1 << 20


class Load:
    """vms AppVMs on one template, all cycling at once; each cycle makes
    queries extra requests (volume.info, status) while the VM runs and
    writes write bytes into one of regions regions of its private volume."""

    def __init__(self, dir_path, qubes_dir, *, vms, queries=20, write=2 * MiB, regions=64, seed=0):
        self.dir_path, self.qubes_dir = dir_path, qubes_dir
        self.n_vms, self.queries, self.write, self.regions = vms, queries, write, regions
        self.rng = random.Random(seed)
        self.latencies = {}  # op -> seconds, per call
        self.written = {}  # vm name -> {region: cycle that last wrote it}
        self.cycles = 0
        self.pool = self.app = self.template = None
        self.vms = []

    # -- set-up ------------------------------------------------------------

    async def setup(self):
        self.pool = BtrfsVdoPool(name="vdo", dir_path=self.dir_path, revisions_to_keep="1")
        await self.pool.setup()
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)
        self.template = fakes.FakeTemplateVM(self.app, "fedora", volume_config=fakes.TEMPLATE_VOLUMES,
                                             base_dir=self.qubes_dir)
        self.init_vm(self.template)
        await self.template.storage.create()
        await self.timed("start", self.template.storage.start())
        harness.write_at(self.template.volumes["root"].block_device().path, 0,
                         harness.compressible("template", 4 * self.write))
        await self.timed("stop", self.template.storage.stop())
        self.vms = [fakes.FakeVM(self.app, f"vm{i}", template=self.template, volume_config=fakes.APPVM_VOLUMES,
                                 base_dir=self.qubes_dir) for i in range(self.n_vms)]
        for vm in self.vms:
            self.init_vm(vm)
        await asyncio.gather(*(vm.storage.create() for vm in self.vms))

    @staticmethod
    def init_vm(vm):
        os.makedirs(vm.dir_path, exist_ok=True)
        vm.init_storage()

    # -- the load ----------------------------------------------------------

    def data(self, vm, cycle):
        return harness.compressible(f"{vm.name} cycle {cycle}", self.write)

    def region(self, cycle):
        return cycle % self.regions * self.write

    async def timed(self, op, coro):
        began = time.monotonic()
        try:
            return await coro
        finally:
            self.latencies.setdefault(op, []).append(time.monotonic() - began)

    async def cycle(self, vm, n):
        """One VM run: start, check what the last run committed and what
        the template committed, write, query, back up, shut down."""
        await self.timed("verify", vm.storage.verify())
        await self.timed("start", vm.storage.start())
        private = vm.volumes["private"].block_device().path
        if n > 0:
            check(read(private, self.region(n - 1), self.write), self.data(vm, n - 1), f"{vm.name} private, cycle {n}")
        root = vm.volumes["root"].block_device().path
        check(read(root, 0, 4096), harness.compressible("template", 4096), f"{vm.name} root, cycle {n}")
        harness.write_at(private, self.region(n), self.data(vm, n))
        self.written.setdefault(vm.name, {})[n % self.regions] = n
        harness.write_at(root, 0, b"scratch" * 512)  # discarded at stop
        for _ in range(self.queries):
            if self.rng.random() < 0.8:
                volume = vm.volumes[self.rng.choice(("root", "private", "volatile"))]
                await self.timed("info", volume.refresh())
            else:
                await self.timed("status", client.call("status", {}, timeout=client.QUERY_TIMEOUT))
        path = await self.timed("export", vm.storage.export("private"))
        if n > 0:  # a backup of a running VM sees its last commit
            check(read(path, self.region(n - 1), 4096), self.data(vm, n - 1)[:4096], f"{vm.name} export, cycle {n}")
        await self.timed("export_end", vm.storage.export_end("private", path))
        await self.timed("stop", vm.storage.stop())
        self.cycles += 1

    async def run(self, cycles, until=None):
        """Every VM runs cycles cycles, or as many as fit before the
        time.monotonic() value until."""
        def more(n):
            return n < cycles if until is None else time.monotonic() < until

        async def run_vm(vm):
            n = 0
            while more(n):
                await self.cycle(vm, n)
                n += 1
        await asyncio.gather(*(run_vm(vm) for vm in self.vms))

    # -- checks and figures ------------------------------------------------

    def verify(self):
        """Every region every VM wrote is in its committed image."""
        for vm in self.vms:
            image = os.path.join(self.dir_path, "appvms", vm.name, "private.img")
            for n in self.written.get(vm.name, {}).values():
                check(read(image, self.region(n), self.write), self.data(vm, n), f"{vm.name} private.img, cycle {n}")

    def figures(self):
        """op -> (calls, median ms, p99 ms, max ms)."""
        out = {}
        for op, secs in sorted(self.latencies.items()):
            secs = sorted(secs)
            p99 = secs[min(len(secs) - 1, int(len(secs) * 0.99))]
            out[op] = (len(secs), statistics.median(secs) * 1000, p99 * 1000, secs[-1] * 1000)
        return out


def read(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def check(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: read other data than was written")


def daemon_memory(pid):
    """The daemon's current and peak resident set, in bytes."""
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def jobs(socket):
    out = harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", socket, "jobs", "--json").stdout
    return json.loads(out)


def wait_for_jobs(socket):
    harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", socket, "jobs", "--wait")
    return jobs(socket)
