# SPDX-License-Identifier: GPL-2.0-or-later
"""bench/commit: how long a VM shutdown's commit takes through btrfs-vdo
(shim -> socket -> daemon) against the same commit done in-process the way
Qubes' file-reflink driver does it (reflink revision, prune, fsync, rename,
precache), on the same loop-mounted btrfs.

Two series, chosen with --series:

extents (the default): images of 1 000, 10 000 and 100 000 compressed
128 KiB extents (--extents), with 1 MiB (--write-kib) rewritten between a
start and the timed stop. btrfs-vdo saves the revision by a hard link and
a rename, so its stop should stay flat in the extent count, while
file-reflink's reflink clones grow with it. Both sides keep
--revisions-to-keep revisions (default 1, a pool's default) and are cycled
once before the timed runs, as a used VM has been: a timed stop prunes
once more revisions were made than are kept, so with 1 every timed stop
prunes one (as each of a used VM's stops does), and with more than --runs
none does. Prints the stop medians side by side and whether the targets
are met: flat (largest/smallest btrfs-vdo median at most 2, over a range
where a cost per extent grows 100-fold) and btrfs-vdo at most 0.3x
file-reflink at the largest image.

rewritten: a --size-mib (2048) image of incompressible data with 1 %, 10 %
and 50 % of it rewritten before the commit.

Each case's figure is the median of --runs runs. Run as root:
    make bench-commit [BENCH_ARGS="--runs 5 --extents 1000,100000"]
    make bench-commit BENCH_ARGS="--series all"
"""

import argparse
import asyncio
import fcntl
import glob
import os
import random
import statistics
import struct
import time

import qubes.storage
from qubes.tests import fakes

from qubes_btrfs_vdo.pool import BtrfsVdoPool
from tests import harness

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
FICLONE = 0x40049409
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1
# btrfs compresses at most 128 KiB of file data into one extent.
COMPRESSED_EXTENT = 128 * KiB
# The targets of the extents series.
FLAT_LIMIT = 2.0
RATIO_TARGET = 0.3


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


def write_some(path, length, seed):
    """Write length bytes of incompressible data at a random 1 MiB-aligned
    offset, without syncing: what a short VM session leaves to commit."""
    rng = random.Random(seed)
    size = os.path.getsize(path)
    offset = rng.randrange(max(size - length, 0) // MiB + 1) * MiB
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, rng.randbytes(length), offset)
    finally:
        os.close(fd)


# --- compressed images ----------------------------------------------------

def make_compressed_image(path, extents):
    """Write extents * 128 KiB of compressible text to path, whose directory
    compresses what it holds, and fsync it: btrfs stores each 128 KiB as a
    compressed extent of its own. Each extent holds its own number, so no
    two are alike."""
    line = b"a line of text in a disk image, compressed by btrfs as it is written\n"
    extent = (line * (COMPRESSED_EXTENT // len(line) + 1))[:COMPRESSED_EXTENT]
    batch = 64
    buf = bytearray(extent * batch)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for first in range(0, extents, batch):
            count = min(batch, extents - first)
            for i in range(count):
                struct.pack_into("<Q", buf, i * COMPRESSED_EXTENT, first + i)
            os.pwrite(fd, memoryview(buf)[: count * COMPRESSED_EXTENT], first * COMPRESSED_EXTENT)
        os.fsync(fd)
    finally:
        os.close(fd)


def count_extents(path):
    """The file's extent count, as FIEMAP reports it."""
    # struct fiemap with fm_extent_count 0: the kernel only counts.
    request = bytearray(struct.pack("=QQIIII", 0, (1 << 64) - 1, FIEMAP_FLAG_SYNC, 0, 0, 0))
    with open(path, "rb") as f:
        fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, request)
    return struct.unpack_from("=QQIIII", request)[3]


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


def _prune(base, keep):
    """Remove all but the newest keep revisions of base."""
    revisions = glob.glob(glob.escape(base) + ".img.*@*Z")
    revisions.sort(key=lambda name: int(name.rsplit(".", 1)[1].split("@")[0]))
    for name in revisions[: max(len(revisions) - keep, 0)]:
        os.unlink(name)


def reflink_commit(base, revision, keep=1):
    """file-reflink's _commit: revision, prune, fsync dirty, drop precache,
    rename dirty over the image, new precache."""
    if keep > 0:
        _reflink(base + ".img", f"{base}.img.{revision}@2026-01-01T00:00:00Z")
    _prune(base, keep)
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

async def _timed(awaitable):
    began = time.perf_counter()
    await awaitable
    return time.perf_counter() - began


def new_volume(app, name, size, revisions_to_keep=None):
    """An AppVM's private volume in the app's pool, created."""
    config = dict(fakes.TEMPLATE_VOLUMES["private"], size=size)
    if revisions_to_keep is not None:
        config["revisions_to_keep"] = revisions_to_keep
    vm = fakes.FakeVM(app, name, volume_config={"private": config}, base_dir="/nonexistent")
    vm.init_storage()
    volume = vm.volumes["private"]
    asyncio.run(volume.create())
    return volume


def bench_vdo(app, size, percent, run):
    volume = new_volume(app, f"vdo-{percent}-{run}", size)
    asyncio.run(volume.start())
    fill(volume.block_device().path, size, seed=run)
    asyncio.run(volume.stop())
    asyncio.run(volume.start())
    rewrite(volume.block_device().path, size, percent, seed=run + 100)
    return asyncio.run(_timed(volume.stop()))


def alternate(run, *measures):
    """Run the measures, in reverse order on odd runs, so that neither side
    always meets a page cache the other one filled."""
    for measure in (measures if run % 2 == 0 else reversed(measures)):
        measure()


def rewritten_series(fs, app, args):
    size = args.size_mib * MiB
    print(f"\ncommit of a {args.size_mib} MiB image of incompressible data, median of {args.runs} runs")
    print(f"{'rewritten':>9}  {'file-reflink way':>16}  {'btrfs-vdo':>10}  {'ratio':>6}")
    for percent in (1, 10, 50):
        ref, vdo = [], []
        for run in range(args.runs):
            alternate(run, lambda: ref.append(bench_reflink(fs.mnt, size, percent, run)),
                      lambda: vdo.append(bench_vdo(app, size, percent, run)))
        r, v = statistics.median(ref), statistics.median(vdo)
        print(f"{percent:>8}%  {r * 1000:>14.1f}ms  {v * 1000:>8.1f}ms  {v / r:>5.2f}x", flush=True)


# --- stop latency by extent count -----------------------------------------

class VdoSide:
    """A btrfs-vdo volume holding a copy of image, stopped through the shim;
    after each stop, the optimizer's job for it (which also makes the
    precache) is waited for, outside the timing."""

    def __init__(self, app, daemon, image, keep):
        extents = count_extents(image)
        self.volume = new_volume(app, f"extents-{extents}", os.path.getsize(image), keep)
        self.clean = os.path.join(self.volume.pool.dir_path, self.volume.vid + ".img")
        # The data lands as a VM's earlier sessions left it: committed, with
        # no optimizer job over all of it pending.
        _reflink(image, self.clean)
        self.cli = (os.path.join(harness.BIN, "btrfs-vdo"), "--socket", daemon.socket)

    def cycle(self, write, seed):
        asyncio.run(self.volume.start())
        write_some(self.volume.block_device().path, write, seed)
        os.sync()
        took = asyncio.run(_timed(self.volume.stop()))
        harness.run(*self.cli, "jobs", "--wait")
        return took

    def close(self):
        asyncio.run(self.volume.remove())


class ReflinkSide:
    """The same image as a file-reflink volume, committed in-process."""

    def __init__(self, root, image, keep):
        self.base = os.path.join(root, f"reflink-{count_extents(image)}", "private")
        os.makedirs(os.path.dirname(self.base))
        _reflink(image, self.base + ".img")
        _reflink(self.base + ".img", self.base + "-precache.img", copy_mtime=True)
        self.keep = keep
        self.revision = 0

    def cycle(self, write, seed):
        # file-reflink's start: the precache becomes the dirty image.
        os.rename(self.base + "-precache.img", self.base + "-dirty.img")
        write_some(self.base + "-dirty.img", write, seed)
        os.sync()
        self.revision += 1
        began = time.perf_counter()
        reflink_commit(self.base, self.revision, self.keep)
        return time.perf_counter() - began

    def close(self):
        for name in glob.glob(glob.escape(self.base) + "*"):
            os.unlink(name)
        os.rmdir(os.path.dirname(self.base))


def measure_extents(fs, app, daemon, image, args):
    """Stop medians (btrfs-vdo, file-reflink) for image. Both sides' files
    are removed after, to make room for the next image; after a failure or
    ^C, the loop filesystem goes with them."""
    vdo = VdoSide(app, daemon, image, args.revisions_to_keep)
    ref = ReflinkSide(fs.mnt, image, args.revisions_to_keep)
    counts = {count_extents(name) for name in (image, vdo.clean, ref.base + ".img")}
    if len(counts) != 1:
        raise RuntimeError(f"the copies of {image} have {sorted(counts)} extents")
    write = args.write_kib * KiB
    # One untimed cycle first, after which both sides have a revision and
    # a precache, as a used VM does.
    vdo.cycle(write, 0)
    ref.cycle(write, 0)
    vdo_times, ref_times = [], []
    for run in range(args.runs):
        seed = 1000 + run
        alternate(run, lambda: vdo_times.append(vdo.cycle(write, seed)),
                  lambda: ref_times.append(ref.cycle(write, seed)))
    vdo.close()
    ref.close()
    return statistics.median(vdo_times), statistics.median(ref_times)


def extents_series(fs, app, daemon, args):
    stage = os.path.join(fs.mnt, "stage")
    os.mkdir(stage)
    harness.run("btrfs", "property", "set", stage, "compression", "zstd")
    print(f"\nstop latency by extent count: {args.write_kib} KiB rewritten between start and stop, "
          f"revisions_to_keep={args.revisions_to_keep}, median of {args.runs} runs", flush=True)
    rows = []
    for extents in args.extents:
        image = os.path.join(stage, f"{extents}.img")
        began = time.perf_counter()
        make_compressed_image(image, extents)
        found = count_extents(image)
        print(f"  image of {extents} x 128 KiB: {found} extents (FIEMAP), "
              f"made in {time.perf_counter() - began:.1f} s", flush=True)
        rows.append((found, *measure_extents(fs, app, daemon, image, args)))
        os.unlink(image)
    print_extents_table(rows)
    print_pruning(args.revisions_to_keep, args.runs)


def print_pruning(keep, runs):
    """Say what the timed stops removed besides committing: the unlink of
    a file's last name frees its extent items within that call."""
    if keep == 0:
        print("no revisions kept: each stop's rename removed the old image's last name")
        return
    # The untimed cycle made revision 1; timed run i makes revision i + 1.
    pruned = sum(1 for run in range(1, runs + 1) if run + 1 > keep)
    print(f"{pruned} of the {runs} timed stops per image pruned a revision "
          f"(--revisions-to-keep {runs + 1} or more times stops that prune none)")


def print_extents_table(rows):
    print(f"{'extents':>9} | {'btrfs-vdo stop median':>21} | {'file-reflink stop median':>24} | {'ratio':>7}")
    for extents, vdo, ref in rows:
        print(f"{extents:>9} | {vdo * 1000:>18.1f} ms | {ref * 1000:>21.1f} ms | {vdo / ref:>6.3f}x")
    low, high = min(row[1] for row in rows), max(row[1] for row in rows)
    flat = high / low
    print(f"target flat in the extent count (largest/smallest btrfs-vdo median <= {FLAT_LIMIT}): "
          f"{'met' if flat <= FLAT_LIMIT else 'missed'}, "
          f"{high * 1000:.1f} ms / {low * 1000:.1f} ms = {flat:.2f}")
    extents, vdo, ref = max(rows)
    ratio = vdo / ref
    print(f"target btrfs-vdo <= {RATIO_TARGET}x file-reflink at {extents} extents: "
          f"{'met' if ratio <= RATIO_TARGET else 'missed'}, "
          f"{vdo * 1000:.1f} ms / {ref * 1000:.1f} ms = {ratio:.3f}x", flush=True)


# --- main -------------------------------------------------------------------

def extent_counts(text):
    counts = [int(part) for part in text.split(",")]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: extent counts must be positive")
    return counts


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", choices=("extents", "rewritten", "all"), default="extents",
                        help="which series to run (default extents)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--extents", type=extent_counts, default=[1000, 10000, 100000],
                        help="extents series: comma-separated extent counts of the images "
                             "(default 1000,10000,100000)")
    parser.add_argument("--write-kib", type=int, default=1024,
                        help="extents series: KiB rewritten between start and stop (default 1024)")
    parser.add_argument("--revisions-to-keep", type=int, default=1,
                        help="extents series: revisions both sides keep, 0 or more (default 1)")
    parser.add_argument("--size-mib", type=int, default=2048,
                        help="rewritten series: image size (default 2048)")
    args = parser.parse_args()
    if args.runs < 1 or args.write_kib < 1 or args.revisions_to_keep < 0:
        parser.error("--runs and --write-kib must be positive, --revisions-to-keep 0 or more")
    return args


def fs_size(args):
    """The loop file's size: sparse, so only what the runs write counts."""
    size = 8 * GiB
    if args.series in ("rewritten", "all"):
        size = max(size, args.size_mib * MiB * (args.runs * 8 + 4))
    if args.series in ("extents", "all"):
        # Compressed text takes one 4 KiB sector per extent; each copy's
        # extent items (DUP metadata) and the rewrites add less than this.
        size = max(size, max(args.extents) * 64 * KiB)
    return size


def main():
    args = parse_args()
    size = fs_size(args)
    print(f"loop btrfs of {size >> 30} GiB (sparse) under /var/tmp")
    with harness.LoopBtrfs(size) as fs, harness.Daemon() as daemon:
        os.environ["BTRFS_VDO_SOCKET"] = daemon.socket
        qubes.storage.VOLUME_STATE_DIR = daemon.rundir
        pool = BtrfsVdoPool(name="bench", dir_path=os.path.join(fs.mnt, "pool"), revisions_to_keep="1")
        asyncio.run(pool.setup())
        app = fakes.FakeApp([pool], default_pool=pool)
        if args.series in ("extents", "all"):
            extents_series(fs, app, daemon, args)
        if args.series in ("rewritten", "all"):
            rewritten_series(fs, app, args)


if __name__ == "__main__":
    main()
