"""make dist, make rpm and make uninstall: the tarball holds the sources,
the RPM holds what dom0 needs with the usual scriptlets, and uninstall
removes exactly what install put."""

import os
import re
import subprocess
import tarfile
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make(*args):
    proc = subprocess.run(["make", "-s", "-C", ROOT, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def version():
    with open(os.path.join(ROOT, "internal/version/version.go")) as fh:
        return re.search(r'^var Version = "(.+)"$', fh.read(), re.M).group(1)


def files_under(top):
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)


class Packaging(unittest.TestCase):
    def test_dist_holds_sources_only(self):
        make("dist")
        path = os.path.join(ROOT, "build", f"btrfs-vdo-{version()}.tar.gz")
        with tarfile.open(path) as tar:
            names = tar.getnames()
        top = f"btrfs-vdo-{version()}/"
        self.assertTrue(all(n.startswith(top) for n in names), names[:5])
        for want in ("go.mod", "Makefile", "packaging/btrfs-vdo.spec", "qubesd-shim/install.py"):
            self.assertIn(top + want, names)
        for unwanted in ("bin/", "build/", ".git/"):
            self.assertFalse([n for n in names if n.startswith(top + unwanted)], unwanted)

    def test_rpm(self):
        with tempfile.TemporaryDirectory() as rpmdir:
            make("rpm", f"RPMDIR={rpmdir}")
            rpm = os.path.join(rpmdir, "RPMS", "x86_64", f"btrfs-vdo-{version()}-1.x86_64.rpm")

            def query(*args):
                return subprocess.run(["rpm", "-qp", *args, rpm], check=True, capture_output=True, text=True).stdout

            files = query("-l").split()
            for want in ("/usr/bin/btrfs-vdod", "/usr/bin/btrfs-vdo",
                         "/usr/lib/systemd/system/btrfs-vdod.socket",
                         "/usr/lib/systemd/system/btrfs-vdod.service",
                         "/usr/share/dbus-1/system.d/org.qubes_os.BtrfsVdo1.conf",
                         "/etc/btrfs-vdo/config.toml",
                         "/usr/share/doc/btrfs-vdo/README.md"):
                self.assertIn(want, files)
            sitelib = [f for f in files if f.endswith("/site-packages/qubes_btrfs_vdo/pool.py")]
            self.assertEqual(len(sitelib), 1, files)
            entry_points = os.path.join(os.path.dirname(os.path.dirname(sitelib[0])),
                                        f"btrfs_vdo-{version()}.dist-info/entry_points.txt")
            self.assertIn(entry_points, files)
            self.assertEqual(query("-c").split(), ["/etc/btrfs-vdo/config.toml"])
            scripts = query("--scripts")
            for want in ("systemctl --no-reload preset btrfs-vdod.socket btrfs-vdod.service",
                         "disable --now btrfs-vdod.socket btrfs-vdod.service",
                         "try-restart btrfs-vdod.service"):
                self.assertIn(want, scripts)

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
