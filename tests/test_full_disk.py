# SPDX-License-Identifier: GPL-2.0-or-later
"""A full filesystem: commit, import, clone and optimize fail with a
no_space StoragePoolException and change nothing; the optimizer never
leaves more space used than it found; once space is freed the same
operations succeed."""

import contextlib
import errno
import glob
import json
import os
import re

import qubes.exc

from tests import harness
from tests.base import MiB, IntegrationCase, quiet

NO_SPACE = re.compile(r"^Cannot [\w ]+: .*no space left on device")


def fill(directory):
    """Fill the filesystem of directory to the brim: data with a file
    written until ENOSPC in ever smaller blocks, then metadata with xattrs
    of a second file, so that not even a reflink or a rename finds room.
    Returns the two files."""
    data, meta = os.path.join(directory, "filler"), os.path.join(directory, "filler.meta")
    fd = os.open(data, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (MiB, 64 << 10, 4 << 10):
            write_until_full(lambda: os.write(fd, bytes(block)))
            os.fsync(fd)
    finally:
        os.close(fd)
    open(meta, "wb").close()
    names = (f"user.fill{n}" for n in range(1 << 30))
    write_until_full(lambda: os.setxattr(meta, next(names), b"x" * 3900))
    harness.run("sync")
    return data, meta


def write_until_full(write):
    try:
        while True:
            write()
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise


def used(directory):
    """Data bytes in use on directory's filesystem, once freed extents are.
    Metadata is left out: its b-trees split and merge by a node or two
    with any write, such as the daemon's record of a failed job, while
    what an optimization could leave behind is data."""
    harness.run("btrfs", "filesystem", "sync", directory)
    out = harness.run("btrfs", "filesystem", "df", "-b", directory).stdout
    (line,) = (line for line in out.splitlines() if line.startswith("Data,"))
    return int(re.search(r"\bused=(\d+)", line).group(1))


class FullDisk(IntegrationCase):
    fs_size = 300 * MiB

    def cli(self, *args):
        return harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, *args).stdout

    def pool_files(self):
        """Every volume file of the pool, with its digest."""
        return {p: harness.sha256(p) for p in glob.glob(self.path("*", "*", "*"))}

    def assert_no_space(self, coro):
        with self.assertRaises(qubes.exc.StoragePoolException) as ctx:
            self.run_async(coro)
        self.assertRegex(str(ctx.exception), NO_SPACE)
        self.assertEqual(ctx.exception.__cause__.code, "no_space")

    def lay_out_legacy(self, vm, data):
        """A volume as another driver left it: image, revision and precache
        sharing uncompressed extents, which only optimize --full rewrites
        (through a compressed copy)."""
        vdir = self.path("appvms", vm)
        os.makedirs(vdir)
        img = os.path.join(vdir, "private.img")
        with open(img, "wb") as f:
            f.write(data)
        for name in ("private.img.1@2025-01-01T00:00:00Z", "private-precache.img"):
            harness.run("cp", "--reflink=always", "--preserve=timestamps", img, os.path.join(vdir, name))
        return self.dir_path + ":appvms/" + vm + "/private"

    def optimize(self, target):
        """optimize --full: the job's outcome, and the space used before
        and after it."""
        before = used(self.dir_path)
        # A failed job makes optimize exit 1; its outcome still says why.
        proc = harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket,
                           "optimize", "--full", "--json", target, check=False)
        (outcome,) = json.loads(proc.stdout)["outcomes"]
        self.assertEqual(proc.returncode, 1 if outcome["error"] else 0, proc.stderr)
        return outcome, before, used(self.dir_path)

    def test_full_disk_changes_nothing_until_space_is_freed(self):
        tpl = self.make_template()
        work = self.make_appvm("work", tpl)
        self.start(work)
        self.write_volume(work, "private", 0, harness.pattern("committed", 2 * MiB))
        self.stop(work)
        clone = self.make_appvm("clone", tpl)
        restored = self.make_appvm("restored", tpl)
        text = self.lay_out_legacy("text", harness.compressible("legacy", 8 * MiB))
        noise = self.lay_out_legacy("noise", harness.pattern("legacy", 8 * MiB))
        self.cli("jobs", "--wait")
        self.start(work)
        self.write_volume(work, "private", MiB, harness.pattern("uncommitted", 2 * MiB))
        work.running = False  # halted: the commit is next
        import_path = self.run_async(restored.storage.import_data("private", None))
        harness.write_at(import_path, 0, harness.pattern("imported", MiB))
        want_import = harness.sha256(import_path)
        want_private = harness.sha256(self.path("appvms", "work", "private-dirty.img"))

        filler, meta_filler = fill(self.fs.mnt)
        try:
            before = self.pool_files()
            used_before = used(self.dir_path)
            with quiet():
                self.assert_no_space(work.volumes["private"].stop())
                self.assert_no_space(restored.storage.import_data_end("private", True))
                self.assert_no_space(restored.storage.import_data("private", None))
                self.assert_no_space(clone.storage.import_volume(clone.volumes["private"], work.volumes["private"]))
            # The request queues the job (its state is written lazily); the
            # job then finds no room and fails.
            outcome, _, _ = self.optimize(text)
            self.assertRegex(outcome["error"], r"no space left on device")
            self.assertEqual(self.pool_files(), before, "a failed operation changed the pool")
            self.assertLessEqual(used(self.dir_path), used_before)

            # Room for the job's state but not for a copy of the volume's
            # 8 MiB: the job fails and leaves no more in use than it found.
            os.remove(meta_filler)
            os.truncate(filler, os.path.getsize(filler) - 2 * MiB)
            outcome, used_before, used_after = self.optimize(noise)
            self.assertRegex(outcome["error"], "no space left on device")
            self.assertLessEqual(used_after, used_before, "the optimizer took space it did not free")
            self.assertEqual(self.pool_files(), before, "the optimizer changed the pool's data")
        finally:
            for path in (filler, meta_filler):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            harness.run("sync")

        self.run_async(work.volumes["private"].stop())
        self.assertEqual(harness.sha256(self.path("appvms", "work", "private.img")), want_private)
        self.run_async(restored.storage.import_data_end("private", True))
        self.assertEqual(harness.sha256(self.path("appvms", "restored", "private.img")), want_import)
        self.run_async(clone.storage.import_volume(clone.volumes["private"], work.volumes["private"]))
        self.assertEqual(harness.sha256(self.path("appvms", "clone", "private.img")), want_private)
        self.cli("jobs", "--wait")
        outcome, used_before, used_after = self.optimize(text)
        self.assertEqual(outcome["error"], "")
        self.assertGreater(outcome["bytes_compressed"], 0)
        self.assertLessEqual(used_after, used_before)
        legacy = {p: d for p, d in before.items() if "/appvms/text/" in p}
        self.assertEqual({p: harness.sha256(p) for p in legacy}, legacy)
