# SPDX-License-Identifier: GPL-2.0-or-later
"""bench/commit: how long a VM shutdown's commit takes through btrfs-vdo
(shim -> socket -> daemon) against the same commit done in-process the way
Qubes' file-reflink driver does it (reflink revision, fsync, rename,
precache), for a 2 GiB image with 1 %, 10 % and 50 % of it rewritten.

Prints the median of --runs runs per case and the ratio. Run as root:
    make bench-commit [BENCH_ARGS="--runs 5"]
"""

import argparse
import asyncio
import fcntl
import os
import random
import statistics
import time

import qubes.storage
from qubes.tests import fakes

from qubes_btrfs_vdo.pool import BtrfsVdoPool
from tests import harness

MiB = 1 << 20
FICLONE = 0x40049409


def fill(path, size, seed):
    """Write size bytes of incompressible data, as a used disk image holds."""
    rng = random.Random(seed)
    chunk = rng.randbytes(64 * MiB)
    with open(path, "r+b") as f:
        for off in range(0, size, len(chunk)):
            f.seek(off)
            f.write(chunk[: size - off])
        os.fsync(f.fileno())


def rewrite(path, size, percent, seed):
    """Rewrite percent of the image in 1 MiB blocks spread over it, without
    syncing: the commit has to flush them, as after a real VM run."""
    rng = random.Random(seed)
    blocks = rng.sample(range(size // MiB), size // MiB * percent // 100)
    data = rng.randbytes(MiB)
    fd = os.open(path, os.O_WRONLY)
    try:
        for b in blocks:
            os.pwrite(fd, data, b * MiB)
    finally:
        os.close(fd)


# --- the file-reflink way, in-process -------------------------------------

def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reflink(src, dst, copy_mtime=False):
    tmp = dst + "~bench"
    with open(src, "rb") as s, open(tmp, "wb") as d:
        fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        if copy_mtime:
            mtime = os.fstat(s.fileno()).st_mtime_ns
            os.utime(d.fileno(), ns=(mtime, mtime))
        os.fsync(d.fileno())
    os.rename(tmp, dst)
    _fsync_dir(os.path.dirname(dst))


def reflink_commit(base, revision):
    """file-reflink's _commit: revision, prune (nothing here), fsync dirty,
    drop precache, rename dirty over the image, new precache."""
    _reflink(base + ".img", f"{base}.img.{revision}@2026-01-01T00:00:00Z")
    fd = os.open(base + "-dirty.img", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    if os.path.exists(base + "-precache.img"):
        os.unlink(base + "-precache.img")
        _fsync_dir(os.path.dirname(base))
    os.rename(base + "-dirty.img", base + ".img")
    _fsync_dir(os.path.dirname(base))
    _reflink(base + ".img", base + "-precache.img", copy_mtime=True)


def bench_reflink(root, size, percent, run):
    base = os.path.join(root, f"ref-{percent}-{run}", "private")
    os.makedirs(os.path.dirname(base))
    with open(base + ".img", "wb") as f:
        f.truncate(size)
    fill(base + ".img", size, seed=run)
    _reflink(base + ".img", base + "-dirty.img")
    rewrite(base + "-dirty.img", size, percent, seed=run + 100)
    began = time.perf_counter()
    reflink_commit(base, 1)
    return time.perf_counter() - began


# --- btrfs-vdo through the shim -------------------------------------------

def bench_vdo(app, size, percent, run):
    vm = fakes.FakeVM(app, f"vdo-{percent}-{run}", volume_config={
        "private": dict(fakes.TEMPLATE_VOLUMES["private"], size=size)}, base_dir="/nonexistent")
    vm.init_storage()
    volume = vm.volumes["private"]
    asyncio.run(volume.create())
    asyncio.run(volume.start())
    fill(volume.block_device().path, size, seed=run)
    asyncio.run(volume.stop())
    asyncio.run(volume.start())
    rewrite(volume.block_device().path, size, percent, seed=run + 100)
    began = time.perf_counter()
    asyncio.run(volume.stop())
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="image size (default 2048)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    fs_size = max(8 << 30, size * (args.runs * 8 + 4))
    print(f"commit of a {args.size_mib} MiB image, median of {args.runs} runs; "
          f"loop btrfs of {fs_size >> 30} GiB (sparse) under /var/tmp")
    with harness.LoopBtrfs(fs_size) as fs, harness.Daemon() as daemon:
        os.environ["BTRFS_VDO_SOCKET"] = daemon.socket
        qubes.storage.VOLUME_STATE_DIR = daemon.rundir
        pool = BtrfsVdoPool(name="bench", dir_path=os.path.join(fs.mnt, "pool"), revisions_to_keep="1")
        asyncio.run(pool.setup())
        app = fakes.FakeApp([pool], default_pool=pool)
        print(f"{'rewritten':>9}  {'file-reflink way':>16}  {'btrfs-vdo':>10}  {'ratio':>6}")
        for percent in (1, 10, 50):
            ref, vdo = [], []
            for run in range(args.runs):
                # Alternate the order so neither side always meets a
                # page cache the other one filled.
                pair = (lambda: ref.append(bench_reflink(fs.mnt, size, percent, run)),
                        lambda: vdo.append(bench_vdo(app, size, percent, run)))
                for measure in (pair if run % 2 == 0 else reversed(pair)):
                    measure()
            r, v = statistics.median(ref), statistics.median(vdo)
            print(f"{percent:>8}%  {r * 1000:>14.1f}ms  {v * 1000:>8.1f}ms  {v / r:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
