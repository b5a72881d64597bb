# SPDX-License-Identifier: GPL-2.0-or-later
"""Who may talk to the daemon, and which files it will touch: a non-root
peer is refused by the real daemon, its socket is root's alone, and
symlinks planted in the pool are refused or replaced, never followed."""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import stat
import subprocess
import time

import qubes.exc
from qubes.tests import fakes

from tests import harness
from tests.base import MiB, IntegrationCase, quiet

NOBODY = 65534
# A decoy's atime is set this far in the past, so that any read of it
# moves the atime even under relatime.
OLD = 3 * 24 * 3600


def run_as_nobody(*args):
    """Run a command as nobody:nogroup without supplementary groups."""
    return subprocess.run(args, user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                          text=True, check=False)


class Peers(IntegrationCase):
    def cli_copy(self, directory):
        """The CLI, copied where nobody may run it."""
        cli = os.path.join(directory, "btrfs-vdo")
        shutil.copy(os.path.join(harness.BIN, "btrfs-vdo"), cli)
        os.chmod(cli, 0o755)
        return cli

    def test_socket_is_roots_alone(self):
        sock_dir = os.path.dirname(self.daemon.socket)
        for path, mode, kind in ((self.daemon.socket, 0o600, stat.S_ISSOCK), (sock_dir, 0o700, stat.S_ISDIR)):
            st = os.lstat(path)
            self.assertTrue(kind(st.st_mode), path)
            self.assertEqual(stat.S_IMODE(st.st_mode), mode, path)
            self.assertEqual((st.st_uid, st.st_gid), (0, 0), path)
        os.chmod(self.daemon.rundir, 0o755)
        try:
            out = run_as_nobody(self.cli_copy(self.daemon.rundir), "--socket", self.daemon.socket, "version")
        finally:
            os.chmod(self.daemon.rundir, 0o700)
        self.assertEqual(out.returncode, 1, out)
        self.assertIn("permission denied", out.stderr.lower())

    def test_non_root_peer_is_refused(self):
        # A daemon of its own whose socket anyone may open, so that only
        # the daemon's peer check stands between nobody and the pools.
        with harness.Daemon() as daemon:
            for path, mode in ((daemon.rundir, 0o755), (os.path.dirname(daemon.socket), 0o755),
                               (daemon.socket, 0o666)):
                os.chmod(path, mode)
            cli = self.cli_copy(daemon.rundir)
            out = run_as_nobody(cli, "--socket", daemon.socket, "status")
            self.assertEqual(out.returncode, 1, out)
            self.assertIn(f"peer uid {NOBODY}", out.stderr)
            self.assertIn("only uid 0 is served", out.stderr)
            self.assertIn("refused client", daemon.log())
            harness.run(cli, "--socket", daemon.socket, "status")  # root still is


@dataclasses.dataclass(frozen=True)
class Plant:
    """A symlink to a file outside the pool, planted at a volume file
    (relative to the pool) before ops run: refused says whether they must
    fail, or else replace the link with a file of their own."""

    name: str
    link: str
    ops: tuple
    refused: bool


PLANTS = [
    Plant("precache", "appvms/work/private-precache.img", ("start",), refused=True),
    Plant("clean image at start", "appvms/work/private.img", ("start",), refused=True),
    Plant("clean image at export", "appvms/work/private.img", ("export",), refused=True),
    Plant("dirty image", "appvms/work/private-dirty.img", ("start",), refused=True),
    Plant("dirty image at commit", "appvms/work/private-dirty.img", ("stop",), refused=True),
    Plant("import image at import_data", "appvms/work/private-import.img", ("import_data", "import_data_end"),
          refused=False),
    Plant("import image at import_data_end", "appvms/work/private-import.img", ("import_data_end",), refused=True),
    Plant("import image at clone", "appvms/clone/private-import.img", ("import_volume",), refused=False),
    Plant("source image at snapshot start", "vm-templates/fedora/root.img", ("start",), refused=True),
]


class Symlinks(IntegrationCase):
    def setUp(self):
        super().setUp()
        self.outside = os.path.join(self.state_dir, self.id().rsplit(".", 1)[-1] + "-outside")
        os.makedirs(self.outside)
        self.decoy = os.path.join(self.outside, "decoy")
        with open(self.decoy, "wb") as f:
            f.write(b"secret\n" * 1000)
        now = time.time()
        os.utime(self.decoy, (now - OLD, now - OLD - 60))
        self.decoy_stat = os.stat(self.decoy)

    def assert_decoy_untouched(self, context):
        st = os.stat(self.decoy)
        self.assertEqual((st.st_ino, st.st_size, st.st_mtime_ns, st.st_atime_ns),
                         (self.decoy_stat.st_ino, self.decoy_stat.st_size, self.decoy_stat.st_mtime_ns,
                          self.decoy_stat.st_atime_ns), f"{context}: the file outside the pool was touched or read")
        self.assertEqual(os.listdir(self.outside), ["decoy"], f"{context}: a file appeared outside the pool")

    def world(self):
        tpl = self.make_template()
        work = self.make_appvm("work", tpl)
        self.start(work)
        self.write_volume(work, "private", 0, harness.pattern("private", MiB))
        self.stop(work)
        clone = self.make_appvm("clone", tpl)
        harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, "jobs", "--wait")
        return {"fedora": tpl, "work": work, "clone": clone}

    def run_op(self, op, vms):
        work, clone = vms["work"], vms["clone"]
        coro = {
            "start": lambda: work.storage.start(),
            "stop": lambda: work.storage.stop(),
            "export": lambda: work.storage.export("private"),
            "import_data": lambda: work.storage.import_data("private", None),
            "import_data_end": lambda: work.storage.import_data_end("private", True),
            "import_volume": lambda: clone.storage.import_volume(clone.volumes["private"], work.volumes["private"]),
        }[op]()
        return self.run_async(coro)

    def test_planted_symlinks_are_refused_or_replaced(self):
        for number, plant in enumerate(PLANTS):
            with self.subTest(plant.name):
                self.use_pool(f"{number:02d}")
                vms = self.world()
                if plant.ops[0] == "import_data_end":
                    self.run_op("import_data", vms)
                target = self.path(plant.link)
                images = self.clean_images()
                if os.path.exists(target):
                    os.remove(target)
                os.symlink(self.decoy, target)
                failed = []
                with quiet():
                    for op in plant.ops:
                        try:
                            self.run_op(op, vms)
                        except qubes.exc.StoragePoolException as err:
                            failed.append(str(err))
                self.assert_decoy_untouched(plant.name)
                if plant.refused:
                    self.assertTrue(failed, f"{plant.name}: {plant.ops} followed a planted symlink")
                    self.assertTrue(os.path.islink(target), f"{plant.name}: the symlink was moved")
                else:
                    self.assertEqual(failed, [])
                    self.assertFalse(os.path.islink(target), f"{plant.name}: the symlink was kept")
                    # The import landed: its destination's image is new.
                    del images[os.path.join(os.path.dirname(target), "private.img")]
                images.pop(target, None)
                self.assertEqual({p: harness.sha256(p) for p in images}, images, plant.name)

    def test_symlinked_vm_directory_is_refused(self):
        tpl = self.make_template()
        os.symlink(self.outside, self.path("appvms", "evil"))
        evil = fakes.FakeVM(self.app, "evil", template=tpl, volume_config=fakes.APPVM_VOLUMES,
                            base_dir=self.qubes_dir)
        os.makedirs(evil.dir_path, exist_ok=True)
        evil.init_storage()
        for op in (evil.storage.create, evil.storage.start, evil.storage.remove):
            with self.assertRaises(qubes.exc.StoragePoolException), quiet():
                self.run_async(op())
        self.assert_decoy_untouched("a VM directory linked outside")

    def test_revision_linked_to_shadow_is_neither_read_nor_renamed(self):
        tpl = self.make_template()
        work = self.make_appvm("work", tpl)
        for seed in ("a", "b"):
            self.start(work)
            self.write_volume(work, "private", 0, harness.pattern(seed, MiB))
            self.stop(work)
        link = self.path("appvms", "work", "private.img.9@2025-01-01T00:00:00Z")
        os.symlink("/etc/shadow", link)
        shadow = os.stat("/etc/shadow")
        with open("/etc/shadow", "rb") as f:
            shadow_digest = hashlib.sha256(f.read()).hexdigest()
        image = self.path("appvms", "work", "private.img")
        before = harness.sha256(image)
        private = work.volumes["private"]

        with self.assertRaises(qubes.exc.StoragePoolException) as ctx, quiet():
            self.run_async(private.revert("9"))
        self.assertEqual(ctx.exception.__cause__.code, "not_found")
        self.assertEqual(harness.sha256(image), before)
        self.assertFalse(os.path.islink(image))
        # Commits and a full optimization leave the link alone: it is not
        # one of the volume's revisions.
        self.start(work)
        self.stop(work)
        cli = (os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket)
        harness.run(*cli, "jobs", "--wait")
        out = harness.run(*cli, "optimize", "--full", "--json", self.dir_path + ":appvms/work/private").stdout
        self.assertEqual({o["error"] for o in json.loads(out)["outcomes"]}, {""})
        self.assertEqual(os.readlink(link), "/etc/shadow")
        after = os.stat("/etc/shadow")
        self.assertEqual((after.st_ino, after.st_mtime_ns, after.st_size),
                         (shadow.st_ino, shadow.st_mtime_ns, shadow.st_size))
        with open("/etc/shadow", "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), shadow_digest)

    def clean_images(self):
        """The committed image of every volume, with its digest."""
        return {p: harness.sha256(p) for p in glob.glob(self.path("*", "*", "*.img"))
                if not p.endswith(("-dirty.img", "-precache.img", "-import.img"))}
