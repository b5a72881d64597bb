# SPDX-License-Identifier: GPL-2.0-or-later
"""install.py produces an installation qubesd can discover, and every
source file compiles."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from tests import support

INSTALL = os.path.join(support.SHIM_DIR, "install.py")

PROBE = r"""
import importlib.metadata as m, json, os
import qubes, qubes.storage, qubes_btrfs_vdo
eps = [e for e in m.entry_points(group="qubes.storage")]
cls = [e for e in eps if e.name == "btrfs-vdo"][0].load()
print(json.dumps({
    "names": [e.name for e in eps],
    "class": cls.__module__ + ":" + cls.__qualname__,
    "driver": cls.driver,
    "package": os.path.dirname(qubes_btrfs_vdo.__file__),
    "qubes": os.path.dirname(qubes.__file__),
    "drivers": qubes.storage.pool_drivers(),
    "params": qubes.storage.driver_parameters("btrfs-vdo"),
}))
"""


def run_install(*args):
    return subprocess.run(
        [sys.executable, INSTALL, *args],
        capture_output=True, text=True, check=True,
    )


class TestInstall(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="btrfs-vdo-install-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.target = os.path.join(self.tmp, "site-packages")

    def probe(self, target):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([target, support.STUB_DIR])
        out = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=self.tmp, env=env,
            capture_output=True, text=True, check=True,
        )
        return json.loads(out.stdout)

    def test_entry_point(self):
        run_install("--target", self.target)
        found = self.probe(self.target)
        self.assertEqual(found["names"], ["btrfs-vdo"])
        self.assertEqual(found["class"], "qubes_btrfs_vdo.pool:BtrfsVdoPool")
        self.assertEqual(found["driver"], "btrfs-vdo")
        self.assertEqual(found["package"],
                         os.path.join(self.target, "qubes_btrfs_vdo"))
        self.assertEqual(found["qubes"],
                         os.path.join(support.STUB_DIR, "qubes"))
        self.assertEqual(found["drivers"], ["btrfs-vdo"])
        self.assertEqual(found["params"], {
            "dir_path": True, "revisions_to_keep": False,
            "setup_check": False, "ephemeral_volatile": False})

    def test_layout_and_record(self):
        run_install("--target", self.target)
        self.assertEqual(sorted(os.listdir(self.target)), [
            "btrfs_vdo-0.1.0.dist-info", "qubes_btrfs_vdo"])
        self.assertFalse(os.path.exists(os.path.join(self.target, "qubes")))
        info = os.path.join(self.target, "btrfs_vdo-0.1.0.dist-info")
        self.assertEqual(sorted(os.listdir(info)), [
            "INSTALLER", "METADATA", "RECORD", "entry_points.txt",
            "top_level.txt"])
        with open(os.path.join(info, "entry_points.txt")) as fh:
            self.assertIn(
                "btrfs-vdo = qubes_btrfs_vdo.pool:BtrfsVdoPool", fh.read())
        with open(os.path.join(info, "METADATA")) as fh:
            metadata = fh.read()
        self.assertIn("Name: btrfs-vdo\n", metadata)
        self.assertIn("Version: 0.1.0\n", metadata)
        self.assertIn("License-Expression: GPL-2.0-or-later\n", metadata)
        installed = set()
        for dirpath, _, files in os.walk(self.target):
            for name in files:
                installed.add(os.path.relpath(
                    os.path.join(dirpath, name), self.target))
        with open(os.path.join(info, "RECORD")) as fh:
            rows = [line.rsplit(",", 2) for line in fh.read().splitlines()]
        self.assertEqual({row[0] for row in rows}, installed)
        for path, digest, size in rows:
            if path.endswith("/RECORD"):
                self.assertEqual((digest, size), ("", ""))
                continue
            with open(os.path.join(self.target, path), "rb") as fh:
                data = fh.read()
            want = base64.urlsafe_b64encode(
                hashlib.sha256(data).digest()).rstrip(b"=").decode()
            self.assertEqual(digest, "sha256=" + want, path)
            self.assertEqual(int(size), len(data), path)
        self.assertFalse(any("tests" in p.split("/") for p in installed))

    def test_root_stages_under_destdir(self):
        destdir = os.path.join(self.tmp, "destdir")
        target = "/usr/lib/python3/site-packages"
        run_install("--target", target, "--root", destdir)
        staged = os.path.join(destdir, target.lstrip("/"))
        self.assertTrue(os.path.isfile(
            os.path.join(staged, "qubes_btrfs_vdo", "pool.py")))
        found = self.probe(staged)
        self.assertEqual(found["names"], ["btrfs-vdo"])

    def test_reinstall_replaces_earlier_versions(self):
        old = os.path.join(self.target, "btrfs_vdo-0.0.9.dist-info")
        os.makedirs(old)
        with open(os.path.join(old, "METADATA"), "w") as fh:
            fh.write("Metadata-Version: 2.1\nName: btrfs-vdo\n"
                     "Version: 0.0.9\n")
        with open(os.path.join(old, "entry_points.txt"), "w") as fh:
            fh.write("[qubes.storage]\nbtrfs-vdo = old:Pool\n")
        os.makedirs(os.path.join(self.target, "qubes_btrfs_vdo"))
        stale = os.path.join(self.target, "qubes_btrfs_vdo", "stale.py")
        open(stale, "w").close()
        run_install("--target", self.target)
        run_install("--target", self.target)
        self.assertFalse(os.path.exists(old))
        self.assertFalse(os.path.exists(stale))
        self.assertEqual(self.probe(self.target)["names"], ["btrfs-vdo"])


class TestCompiles(unittest.TestCase):

    def test_all_sources_compile(self):
        roots = [support.SHIM_DIR, support.STUB_DIR]
        count = 0
        for root in roots:
            for dirpath, _, files in os.walk(root):
                for name in files:
                    if name.endswith(".py"):
                        path = os.path.join(dirpath, name)
                        with open(path, encoding="utf-8") as fh:
                            compile(fh.read(), path, "exec")
                        count += 1
        self.assertGreater(count, 10)
