# SPDX-License-Identifier: GPL-2.0-or-later
"""make install and make shim-install lay out what dom0 needs, and the
installed shim is found by qubesd's entry-point lookup."""

import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB = os.path.join(ROOT, "python-stub")
with open(os.path.join(ROOT, "version")) as _fh:
    VERSION = _fh.readline().strip()


def make(*args):
    return subprocess.run(["make", "-s", "-C", ROOT, *args], check=True, capture_output=True, text=True)


class Install(unittest.TestCase):
    def test_install_honors_destdir_and_prefix(self):
        with tempfile.TemporaryDirectory() as dest:
            make("install", f"DESTDIR={dest}", "PREFIX=/usr/local", "PYTHONDIR=/usr/local/lib/python3/site-packages")
            for path in ("usr/local/bin/btrfs-vdod", "usr/local/bin/btrfs-vdo",
                         "usr/local/lib/systemd/system/btrfs-vdod.socket",
                         "usr/local/lib/systemd/system/btrfs-vdod.service",
                         "usr/local/lib/python3/site-packages/qubes_btrfs_vdo/pool.py"):
                self.assertTrue(os.path.exists(os.path.join(dest, path)), path)
            with open(os.path.join(dest, "usr/local/lib/systemd/system/btrfs-vdod.service")) as unit:
                text = unit.read()
            self.assertIn("ExecStart=/usr/local/bin/btrfs-vdod\n", text)
            self.assertIn("Before=qubesd.service", text)
            self.assertFalse(os.path.exists(os.path.join(dest, "usr/local/lib/python3/site-packages/qubes")),
                             "python-stub was installed")
            out = subprocess.run([os.path.join(dest, "usr/local/bin/btrfs-vdod"), "--version"],
                                 check=True, capture_output=True, text=True).stdout
            self.assertRegex(out, r"^btrfs-vdod \d+\.\d+\.\d+")

    def test_shim_install_registers_entry_point(self):
        with tempfile.TemporaryDirectory() as target:
            make("shim-install", f"PYTHONDIR={target}")
            self.assertEqual(sorted(n for n in os.listdir(target) if n != "__pycache__"),
                             [f"btrfs_vdo-{VERSION}.dist-info", "qubes_btrfs_vdo"])
            probe = (
                "import importlib.metadata as m\n"
                "eps = m.entry_points(group='qubes.storage')\n"
                "print([e.name for e in eps])\n"
                "cls = eps['btrfs-vdo'].load()\n"
                "print(cls.driver, cls.__module__)\n"
            )
            env = dict(os.environ, PYTHONPATH=f"{target}:{STUB}")
            out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=target,
                                 check=True, capture_output=True, text=True).stdout
            self.assertEqual(out.splitlines(), ["['btrfs-vdo']", "btrfs-vdo qubes_btrfs_vdo.pool"])
