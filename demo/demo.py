# SPDX-License-Identifier: GPL-2.0-or-later
"""A tour of btrfs-vdo: a loop-mounted btrfs pool, the daemon, and qubesd's
own call sequences (python-stub) driving the real driver for a template
and two AppVMs. Everything it makes is removed at the end, also on failure
or Ctrl-C."""

import asyncio
import os
import signal
import sys

import qubes.storage
from qubes.tests import fakes

from qubes_btrfs_vdo.pool import BtrfsVdoPool
from tests import harness

MiB = 1 << 20


def say(text):
    print(f"\n== {text}", flush=True)


def os_like_data(seed, size):
    """Text that compresses and repeats like system files do."""
    words = [f"{seed}-lib{i}.so.{i % 7}" for i in range(512)]
    line = (" ".join(words) + "\n").encode()
    return (line * (size // len(line) + 1))[:size]


class Demo:
    def __init__(self, fs, daemon):
        self.fs = fs
        self.dir_path = os.path.join(fs.mnt, "qubes-vdo")
        self.qubes_dir = os.path.join(daemon.rundir, "var-lib-qubes")
        qubes.storage.VOLUME_STATE_DIR = os.path.join(daemon.rundir, "run-qubes")
        os.makedirs(qubes.storage.VOLUME_STATE_DIR)
        self.pool = BtrfsVdoPool(name="vdo", dir_path=self.dir_path, revisions_to_keep="2")
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)

    def vm(self, cls, name, volumes, template=None):
        vm = cls(self.app, name, template=template, volume_config=volumes, base_dir=self.qubes_dir)
        os.makedirs(vm.dir_path, exist_ok=True)
        vm.init_storage()
        asyncio.run(vm.storage.create())
        print(f"   created {name}: " + ", ".join(f"{n} ({v.vid})" for n, v in vm.volumes.items()))
        return vm

    def session(self, vm, writes):
        """Start the VM, write into its disks as the guest would, shut it down."""
        asyncio.run(vm.storage.verify())
        asyncio.run(vm.storage.start())
        for volume, offset, data in writes:
            harness.write_at(vm.volumes[volume].block_device().path, offset, data)
        asyncio.run(vm.storage.stop())
        print(f"   {vm.name}: started, wrote {sum(len(d) for _, _, d in writes) // MiB} MiB, shut down (committed)")

    def run(self):
        say(f"qvm-pool add vdo btrfs-vdo -o dir_path={self.dir_path},revisions_to_keep=2")
        asyncio.run(self.pool.setup())
        say("qvm-create --class TemplateVM fedora; qvm-create work / personal from it")
        fedora = self.vm(fakes.FakeTemplateVM, "fedora", fakes.TEMPLATE_VOLUMES)
        self.session(fedora, [("root", 0, os_like_data("fedora", 96 * MiB))])
        work = self.vm(fakes.FakeVM, "work", fakes.APPVM_VOLUMES, template=fedora)
        personal = self.vm(fakes.FakeVM, "personal", fakes.APPVM_VOLUMES, template=fedora)

        say("Each AppVM boots from the template's committed root and keeps its own private volume")
        self.session(work, [("private", 0, harness.pattern("report v1", 8 * MiB))])
        self.session(work, [("private", 0, harness.pattern("report v2", 8 * MiB))])
        self.session(personal, [("private", 0, harness.pattern("photos", 16 * MiB))])
        self.session(fedora, [("root", 32 * MiB, os_like_data("update", 8 * MiB))])
        private = work.volumes["private"]
        print(f"   work:private revisions: {private.revisions}")

        say("qvm-volume revert work:private (back to the first session's data)")
        asyncio.run(work.storage.revert("private", list(private.revisions)[-1]))
        asyncio.run(work.storage.start())
        with open(private.block_device().path, "rb") as f:
            back = f.read(8 * MiB) == harness.pattern("report v1", 8 * MiB)
        asyncio.run(work.storage.stop())
        print(f"   work:private now holds report v1: {back}")
        if not back:
            raise SystemExit("revert did not restore the data")

        cli = os.path.join(harness.BIN, "btrfs-vdo")
        say("btrfs-vdo jobs --wait: the optimizer compresses what each shutdown committed, in the background")
        harness.run(cli, "jobs", "--wait")
        print(harness.run(cli, "jobs").stdout)
        say("btrfs-vdo stats vdo: space per pool, VM and volume, counted as compsize counts it")
        print(harness.run(cli, "stats", "vdo").stdout)

        say("btrfs filesystem du: every revision and precache shares its unchanged extents")
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(self.dir_path) for name in names
            if not root.startswith(os.path.join(self.dir_path, ".btrfs-vdo"))
        )
        du = harness.run("btrfs", "filesystem", "du", "-s", "--raw", *files).stdout.splitlines()[1:]
        total = sum(int(row.split()[0]) for row in du)
        print(harness.run("btrfs", "filesystem", "du", "-s", *files).stdout.replace(self.dir_path + "/", ""))
        st = os.statvfs(self.dir_path)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        print(f"   data referenced by the pool's images, revisions and precaches: {total / MiB:8.1f} MiB")
        print(f"   space the whole filesystem uses (data and metadata):            {used / MiB:8.1f} MiB")
        print(f"   saved by sharing and compression: {(total - used) / MiB:.1f} MiB ({100 * (1 - used / total):.0f} %)")
        say("btrfs-vdo status")
        print(harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "status").stdout)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    say("Making a 2 GiB sparse btrfs on a loop device under /var/tmp and starting btrfs-vdod")
    with harness.LoopBtrfs(2 << 30) as fs, harness.Daemon() as daemon:
        os.environ["BTRFS_VDO_SOCKET"] = daemon.socket
        try:
            Demo(fs, daemon).run()
        except BaseException:
            print("\n-- daemon log --\n" + daemon.log()[-4000:], file=sys.stderr)
            raise
        print("\n-- daemon log (INFO lines) --")
        print("\n".join(l for l in daemon.log().splitlines() if "level=INFO" in l)[-3000:])
    say("Cleaned up: daemon stopped, filesystem unmounted, loop device released")


if __name__ == "__main__":
    main()
