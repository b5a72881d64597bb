"""The background optimiser seen from outside: commits through the shim,
btrfs-vdo optimize/jobs/stats, figures checked against compsize."""

import glob
import json
import os

import qubes.exc
from qubes_btrfs_vdo.pool import BtrfsVdoPool

from tests import harness
from tests.base import MiB, IntegrationCase, quiet


def text(seed, size):
    line = f"{seed}: lorem ipsum dolor sit amet, consectetur adipiscing elit\n".encode()
    return (line * (size // len(line) + 1))[:size]


def compsize(paths):
    """compsize --bytes as {type: (disk, uncompressed, referenced)}."""
    out = harness.run("compsize", "--bytes", *paths).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("TOTAL", "none", "zstd", "zlib", "lzo", "prealloc"):
            rows[parts[0]] = tuple(int(p) for p in parts[2:5])
    return rows


class Optimiser(IntegrationCase):
    def cli(self, *args):
        return harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, *args).stdout

    def test_commit_is_compressed_in_background(self):
        tpl = self.make_template()
        self.start(tpl)
        self.write_volume(tpl, "root", 0, text("root", 48 * MiB))
        self.stop(tpl)
        self.cli("jobs", "--wait")
        self.start(tpl)
        want = harness.sha256(tpl.volumes["root"].block_device().path)
        self.write_volume(tpl, "root", 16 * MiB, text("update", 4 * MiB))
        want = harness.sha256(tpl.volumes["root"].block_device().path)
        self.stop(tpl)
        self.cli("jobs", "--wait")
        img = self.path("vm-templates", "fedora", "root.img")
        self.assertEqual(harness.sha256(img), want)

        files = sorted(glob.glob(self.path("vm-templates", "fedora", "root*")))
        stats = json.loads(self.cli("stats", "--json", "vdo:vm-templates/fedora/root"))
        (row,) = stats["volumes"]
        ref = compsize(files)
        self.assertEqual((row["disk_bytes"], row["uncompressed_bytes"], row["referenced_bytes"]), ref["TOTAL"])
        by_type = {t["type"]: (t["disk_bytes"], t["uncompressed_bytes"], t["referenced_bytes"]) for t in row["by_type"]}
        for typ, figures in ref.items():
            if typ != "TOTAL":
                self.assertEqual(by_type[typ], figures, typ)
        self.assertIn("zstd", ref)
        self.assertLess(ref["TOTAL"][0], 8 * MiB, "48 MiB of text was not compressed")
        # Image, revision and precache share their data: referenced is
        # three times what is stored uncompressed.
        self.assertGreaterEqual(ref["TOTAL"][2], 2 * ref["TOTAL"][1])
        jobs = json.loads(self.cli("jobs", "--json"))
        self.assertEqual(jobs["jobs"], [])
        self.assertGreater(jobs["counters"]["bytes_saved"], 40 * MiB)
        human = self.cli("stats", "fedora")
        self.assertRegex(human, r"(?m)^vm +fedora ")

    def test_optimize_full_on_a_taken_over_volume(self):
        vdir = self.path("appvms", "old")
        os.makedirs(vdir)
        img = os.path.join(vdir, "private.img")
        with open(img, "wb") as f:
            f.write(text("old", 32 * MiB))
        for name in ("private.img.1@2025-01-01T00:00:00Z", "private-precache.img"):
            harness.run("cp", "--reflink=always", "--preserve=timestamps", img, os.path.join(vdir, name))
        files = sorted(glob.glob(os.path.join(vdir, "*")))
        sums = {f: harness.sha256(f) for f in files}
        before = compsize(files)["TOTAL"]
        out = json.loads(self.cli("optimize", "--full", "--json", self.dir_path))["outcomes"]
        self.assertEqual([o["vid"] for o in out], ["appvms/old/private"])
        self.assertEqual(out[0]["error"], "")
        after = compsize(files)["TOTAL"]
        self.assertEqual({f: harness.sha256(f) for f in files}, sums)
        # Every file still references all its data; dedup may have found
        # repeated blocks, so less is stored even uncompressed.
        self.assertEqual(after[2], before[2], "references changed")
        self.assertLessEqual(after[1], before[1], "an extent was unshared")
        self.assertLess(after[0] * 4, before[0], "not compressed")
        self.assertEqual(os.stat(img).st_mtime_ns, os.stat(os.path.join(vdir, "private-precache.img")).st_mtime_ns)

    def test_only_known_pools_are_targets(self):
        """Naming a directory that is no pool is a usage error and makes
        nothing; qvm-pool add refuses a pool inside another."""
        stranger = os.path.join(self.fs.mnt, "not-a-pool")
        os.makedirs(os.path.join(stranger, "appvms"))
        for args, want in ((("stats", stranger), f"{stranger} is not a pool directory; known pools: "),
                           (("optimize", stranger), f"vdo ({self.dir_path})"),
                           (("optimize", self.dir_path + ":appvms/nosuch/private"), "no volume appvms/nosuch/private")):
            proc = harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, *args,
                               check=False)
            self.assertEqual(proc.returncode, 2, proc)
            self.assertIn(want, proc.stderr)
        self.assertEqual(os.listdir(stranger), ["appvms"])
        self.assertNotIn(stranger, self.cli("status"))
        inner = BtrfsVdoPool(name="inner", dir_path=self.path("appvms", "inner"))
        with self.assertRaises(qubes.exc.StoragePoolException) as ctx, quiet():
            self.run_async(inner.setup())
        self.assertIn(f"inside pool vdo ({self.dir_path})", str(ctx.exception))
        self.assertFalse(os.path.exists(self.path("appvms", "inner")))
