# SPDX-License-Identifier: GPL-2.0-or-later
"""make rpm builds both packages from make dist's tarball alone, with no
network and no Go module cache; rpmlint finds no errors in them, and they
hold and require what dom0 needs.

Run by make test-rpm (python3 -m unittest tests.rpm_offline), once: the
name keeps it out of test-integration's discovery, which would build the
packages a second time."""

import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_line(name):
    with open(os.path.join(ROOT, name)) as fh:
        return fh.readline().strip()


VERSION = first_line("version")
RELEASE = first_line("rel")


def run(*args, env=None):
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    return proc.stdout


class OfflineRpm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        rpmdir = os.path.join(cls.tmp.name, "rpm")
        cls.modcache = os.path.join(cls.tmp.name, "gomodcache")
        os.mkdir(cls.modcache)
        run("make", "-s", "dist")
        env = dict(os.environ, GOMODCACHE=cls.modcache, GOPROXY="off", GOFLAGS="-mod=vendor")
        # A network namespace of its own has only a loopback device that is
        # down: any download fails.
        run("unshare", "--net", "make", "-s", "rpm", f"RPMDIR={rpmdir}", env=env)
        cls.main = os.path.join(rpmdir, "RPMS", "x86_64", f"btrfs-vdo-{VERSION}-{RELEASE}.x86_64.rpm")
        cls.shim = os.path.join(rpmdir, "RPMS", "noarch",
                                f"python3-qubes-btrfs-vdo-{VERSION}-{RELEASE}.noarch.rpm")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def query(self, rpm, *args):
        return run("rpm", "-qp", *args, rpm)

    def test_built_from_vendor_without_module_cache(self):
        self.assertEqual(os.listdir(self.modcache), [], "the build filled GOMODCACHE")
        with tarfile.open(os.path.join(ROOT, "build", f"btrfs-vdo-{VERSION}.tar.gz")) as tar:
            names = tar.getnames()
        self.assertIn(f"btrfs-vdo-{VERSION}/vendor/modules.txt", names)

    def test_rpmlint_finds_no_errors(self):
        proc = subprocess.run(["rpmlint", "-c", "rpm_spec/rpmlint.toml", self.main, self.shim,
                               "rpm_spec/btrfs-vdo.spec"],
                              cwd=ROOT, capture_output=True, text=True)
        sys.stderr.write(proc.stdout)
        summary = re.search(r"(\d+) errors, (\d+) warnings", proc.stdout)
        self.assertIsNotNone(summary, proc.stdout + proc.stderr)
        self.assertEqual(summary.group(1), "0", proc.stdout)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_main_package(self):
        self.assertEqual(self.query(self.main, "--qf", "%{ARCH} %{LICENSE}"), "x86_64 GPL-2.0-or-later")
        self.assertIn("btrfs-progs", self.query(self.main, "--requires").split("\n"))
        self.assertIn(f"btrfs-vdo = {VERSION}-{RELEASE}", self.query(self.main, "--provides"))
        files = self.query(self.main, "-l").split()
        for want in ("/usr/bin/btrfs-vdod", "/usr/bin/btrfs-vdo",
                     "/usr/lib/systemd/system/btrfs-vdod.socket",
                     "/usr/lib/systemd/system/btrfs-vdod.service",
                     "/usr/share/dbus-1/system.d/org.qubes_os.BtrfsVdo1.conf",
                     "/etc/btrfs-vdo/config.toml",
                     "/usr/share/doc/btrfs-vdo/README.md"):
            self.assertIn(want, files)
        self.assertTrue([f for f in files if re.fullmatch(r"/usr/share/licenses/btrfs-vdo[^/]*/LICENSE", f)], files)
        self.assertFalse([f for f in files if "site-packages" in f], "the driver belongs to the shim package")
        self.assertEqual(self.query(self.main, "-c").split(), ["/etc/btrfs-vdo/config.toml"])
        scripts = self.query(self.main, "--scripts")
        for want in ("systemctl --no-reload preset btrfs-vdod.socket btrfs-vdod.service",
                     "disable --now btrfs-vdod.socket btrfs-vdod.service",
                     "try-restart btrfs-vdod.service"):
            self.assertIn(want, scripts)

    def test_binaries_are_pie_with_build_id_and_version(self):
        with tempfile.TemporaryDirectory() as root:
            subprocess.run(f"rpm2cpio '{self.main}' | cpio -idm --quiet", shell=True, cwd=root, check=True)
            ids = set()
            for name in ("btrfs-vdod", "btrfs-vdo"):
                path = os.path.join(root, "usr/bin", name)
                header = run("readelf", "-h", "-n", path)
                self.assertRegex(header, r"Type:\s+DYN", f"{name} is not PIE")
                build_id = re.search(r"Build ID: ([0-9a-f]+)", header)
                self.assertIsNotNone(build_id, f"{name} has no GNU build id")
                ids.add(build_id.group(1))
            self.assertEqual(len(ids), 2, "the binaries share a build id")
            bindir = os.path.join(root, "usr/bin")
            self.assertEqual(run(os.path.join(bindir, "btrfs-vdod"), "--version"), f"btrfs-vdod {VERSION}\n")
            # The CLI prints its own version before it asks the (absent) daemon.
            cli = subprocess.run([os.path.join(bindir, "btrfs-vdo"), "--socket", os.path.join(root, "none.sock"),
                                  "version"], capture_output=True, text=True)
            self.assertEqual(cli.stdout.splitlines()[:1], [f"btrfs-vdo {VERSION}"], cli.stderr)

    def test_shim_package(self):
        self.assertEqual(self.query(self.shim, "--qf", "%{ARCH}"), "noarch")
        requires = self.query(self.shim, "--requires").split("\n")
        for want in ("qubes-core-dom0", f"btrfs-vdo = {VERSION}-{RELEASE}"):
            self.assertIn(want, requires)
        self.assertTrue([r for r in requires if r.startswith("python(abi) = 3.")], requires)
        self.assertIn(f"python3dist(btrfs-vdo) = {VERSION}", self.query(self.shim, "--provides"))
        files = self.query(self.shim, "-l").split()
        pool = [f for f in files if f.endswith("/site-packages/qubes_btrfs_vdo/pool.py")]
        self.assertEqual(len(pool), 1, files)
        entry_points = f"{os.path.dirname(os.path.dirname(pool[0]))}/btrfs_vdo-{VERSION}.dist-info/entry_points.txt"
        self.assertIn(entry_points, files)
        with tempfile.TemporaryDirectory() as root:
            subprocess.run(f"rpm2cpio '{self.shim}' | cpio -idm --quiet", shell=True, cwd=root, check=True)
            with open(root + entry_points) as fh:
                text = fh.read()
        self.assertIn("[qubes.storage]\nbtrfs-vdo = qubes_btrfs_vdo.pool:BtrfsVdoPool\n", text)


if __name__ == "__main__":
    unittest.main()
