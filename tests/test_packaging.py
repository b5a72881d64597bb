# SPDX-License-Identifier: GPL-2.0-or-later
"""make dist and make uninstall: the tarball holds the sources, vendor/ and
the spec, made the same way twice; every place that names the version
agrees with the file version; uninstall removes exactly what install put.
The RPM itself is checked by make test-rpm (tests/rpm_offline.py)."""

import hashlib
import os
import re
import subprocess
import tarfile
import tempfile
import time
import tomllib
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make(*args):
    proc = subprocess.run(["make", "-s", "-C", ROOT, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def read(name):
    with open(os.path.join(ROOT, name)) as fh:
        return fh.read()


def version():
    return read("version").splitlines()[0]


def files_under(top):
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


class Packaging(unittest.TestCase):
    def test_dist_holds_sources_vendor_and_spec(self):
        make("dist")
        path = os.path.join(ROOT, "build", f"btrfs-vdo-{version()}.tar.gz")
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            spec = tar.extractfile(f"btrfs-vdo-{version()}/rpm_spec/btrfs-vdo.spec").read().decode()
        top = f"btrfs-vdo-{version()}/"
        self.assertTrue(all(n.startswith(top) for n in names), names[:5])
        for want in ("go.mod", "Makefile", "LICENSE", "version", "rel", ".qubesbuilder",
                     "rpm_spec/btrfs-vdo.spec.in", "rpm_spec/btrfs-vdo.spec",
                     "vendor/modules.txt", "qubesd-shim/install.py"):
            self.assertIn(top + want, names)
        for unwanted in ("bin/", "build/", ".git/"):
            self.assertFalse([n for n in names if n.startswith(top + unwanted)], unwanted)
        self.assertIn(f"\nVersion:        {version()}\n", spec)
        self.assertIn(f"\nRelease:        {read('rel').splitlines()[0]}%{{?dist}}\n", spec)
        self.assertNotRegex(spec, r"@[A-Z]+@", "a placeholder is left in the spec")
        self.assertEqual(names, sorted(names))
        commit_time = int(subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, check=True,
                                         capture_output=True, text=True).stdout)
        self.assertEqual({(m.uid, m.gid, m.mtime) for m in members}, {(0, 0, commit_time)})

    def test_dist_is_reproducible(self):
        make("dist")
        path = os.path.join(ROOT, "build", f"btrfs-vdo-{version()}.tar.gz")
        first = sha256(path)
        # A checkout made later, with other mtimes, makes the same tarball.
        os.utime(os.path.join(ROOT, "go.mod"), (time.time(), time.time() - 12345))
        os.remove(path)
        make("dist")
        self.assertEqual(sha256(path), first)

    def test_version_agrees_everywhere(self):
        want = version()
        self.assertRegex(want, r"^\d+\.\d+\.\d+$")
        self.assertRegex(read("rel").splitlines()[0], r"^\d+$")
        go = re.search(r'^var Version = "(.+)"$', read("internal/version/version.go"), re.M).group(1)
        shim = re.search(r'^__version__ = "(.+)"$', read("qubesd-shim/qubes_btrfs_vdo/__init__.py"), re.M).group(1)
        project = tomllib.loads(read("qubesd-shim/pyproject.toml"))["project"]["version"]
        self.assertEqual((go, shim, project), (want,) * 3)

    def test_uninstall_removes_what_install_put(self):
        with tempfile.TemporaryDirectory() as dest:
            keep = os.path.join(dest, "usr/local/bin/other-tool")
            os.makedirs(os.path.dirname(keep))
            open(keep, "w").close()
            args = (f"DESTDIR={dest}", "PREFIX=/usr/local", "PYTHONDIR=/usr/local/lib/python3/site-packages")
            make("install", *args)
            installed = files_under(dest)
            self.assertIn("usr/local/share/dbus-1/system.d/org.qubes_os.BtrfsVdo1.conf", installed)
            self.assertIn("usr/local/share/doc/btrfs-vdo/config.toml", installed)
            make("uninstall", *args)
            self.assertEqual(files_under(dest), ["usr/local/bin/other-tool"])
            self.assertFalse(os.path.exists(os.path.join(dest, "usr/local/share/doc/btrfs-vdo")))
