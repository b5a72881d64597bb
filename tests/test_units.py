# SPDX-License-Identifier: GPL-2.0-or-later
"""The systemd units: systemd-analyze rates and verifies them, and the
daemon lives within what the service allows it. PID 1 here is not
systemd, so the service's sandbox is rebuilt from the unit file around
the real daemon: its capability bounding set and no_new_privs (setpriv),
its umask, its read-only system directories in a mount namespace of its
own and its network namespace (unshare), and its system call filter,
checked against every call the daemon makes (strace) through a volume's
whole life, a loop device resize and an optimize pass on a real btrfs."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from tests import harness
from tests.base import MiB, IntegrationCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = ("btrfs-vdod.socket", "btrfs-vdod.service")
SERVICE = os.path.join(ROOT, "systemd", "btrfs-vdod.service")
MAN_PAGES = ("btrfs-vdo.8", "btrfs-vdod.8", "btrfs-vdo.toml.5")
MAX_EXPOSURE = 4.0

# Settings that give the daemon another view of the file system than
# qubesd's: a pool's dir_path must name the same file for both.
PATH_CHANGING = ("ProtectHome", "PrivateTmp", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths",
                 "RootDirectory", "RootImage", "InaccessiblePaths", "ReadOnlyPaths", "ProtectSystem=strict")


def unit_settings(path):
    """The unit's settings as {key: [value, ...]}, in file order."""
    settings = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")):
                key, _, value = line.partition("=")
                settings.setdefault(key, []).append(value)
    return settings


class Analyze(unittest.TestCase):
    def test_security_exposure(self):
        out = harness.run("systemd-analyze", "security", "--offline=yes", SERVICE).stdout
        m = re.search(r"Overall exposure level for btrfs-vdod\.service: (\d+\.\d+)", out)
        self.assertIsNotNone(m, out)
        self.assertLessEqual(float(m[1]), MAX_EXPOSURE, out)

    def test_verify(self):
        """Clean, with ExecStart= at the built daemon and the man pages of
        Documentation= found through MANPATH, as when installed."""
        with tempfile.TemporaryDirectory() as tmp:
            for unit in UNITS:
                with open(os.path.join(ROOT, "systemd", unit), encoding="utf-8") as src:
                    text = src.read()
                text, n = re.subn(r"(?m)^ExecStart=/usr/bin/btrfs-vdod$",
                                  "ExecStart=" + os.path.join(harness.BIN, "btrfs-vdod"), text)
                self.assertEqual(n, int(unit.endswith(".service")), unit)
                with open(os.path.join(tmp, unit), "w", encoding="utf-8") as dst:
                    dst.write(text)
            for page in MAN_PAGES:
                section = os.path.join(tmp, "man", "man" + page.rsplit(".", 1)[1])
                os.makedirs(section, exist_ok=True)
                os.symlink(os.path.join(ROOT, "docs", "man", page), os.path.join(section, page))
            proc = subprocess.run(["systemd-analyze", "verify", *UNITS], cwd=tmp, capture_output=True, text=True,
                                  env={**os.environ, "MANPATH": os.path.join(tmp, "man")})
            self.assertEqual((proc.returncode, proc.stdout + proc.stderr), (0, ""))

    def test_documentation_and_paths(self):
        for unit in UNITS:
            settings = unit_settings(os.path.join(ROOT, "systemd", unit))
            docs = " ".join(settings["Documentation"]).split()
            for want in ("man:btrfs-vdod(8)", "man:btrfs-vdo(8)", "man:btrfs-vdo.toml(5)"):
                self.assertIn(want, docs, unit)
            for key in PATH_CHANGING:
                name, _, value = key.partition("=")
                self.assertFalse([v for v in settings.get(name, []) if not value or v == value], f"{unit}: {key}")


def syscall_groups():
    """systemd's system call groups, {"@name": [member, ...]}."""
    groups, current = {}, None
    for line in harness.run("systemd-analyze", "syscall-filter").stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#") and current is not None:
            current.append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(names, groups):
    out = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def allowed_syscalls(settings):
    """The calls SystemCallFilter= lets through: the allow lists minus the
    deny lists (~), groups expanded."""
    groups = syscall_groups()
    allow, deny = set(), set()
    for value in settings["SystemCallFilter"]:
        if value.startswith("~"):
            deny |= expand(value[1:].split(), groups)
        else:
            allow |= expand(value.split(), groups)
    return allow - deny


class Sandboxed(IntegrationCase):
    """The daemon under the service's capabilities, no_new_privs, umask,
    read-only system directories, private mount and network namespaces,
    and system call filter. One test: the calls are known only once the
    daemon has exited."""

    settings = unit_settings(SERVICE)

    @classmethod
    def make_daemon(cls):
        caps = cls.settings["CapabilityBoundingSet"][-1].split()
        cls.caps = {c.lower() for c in caps}
        assert cls.settings["NoNewPrivileges"] == ["yes"]
        cls.syscall_log = os.path.join(tempfile.mkdtemp(prefix=harness.PREFIX + "strace-", dir="/var/tmp"), "calls")
        cls.addClassCleanup(shutil.rmtree, os.path.dirname(cls.syscall_log), True)
        bounding = "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
        assert cls.settings["ProtectSystem"] == ["full"] and cls.settings["PrivateNetwork"] == ["yes"]
        # Like systemd: a mount namespace that host mounts propagate into,
        # /usr, /boot, /etc (ProtectSystem=full) and /sys, /proc/sys
        # (ProtectKernelTunables=) read-only, a network namespace of its own.
        read_only = " ".join(d for d in ("/usr", "/boot", "/etc", "/sys", "/proc/sys") if os.path.isdir(d))
        setup = (f'for d in {read_only}; do mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 1; done; '
                 f'umask {cls.settings["UMask"][-1]} && exec "$@"')
        wrapper = ["unshare", "--mount", "--propagation", "slave", "--net", "sh", "-c", setup, "sh",
                   "setpriv", "--bounding-set", bounding, "--no-new-privs",
                   "strace", "--follow-forks", "--summary-only", "--summary-columns=name,calls",
                   "--output", cls.syscall_log, "--"]
        return harness.Daemon(wrapper=wrapper)

    def daemon_pid(self):
        """The daemon, strace's child."""
        with open(f"/proc/{self.daemon.proc.pid}/task/{self.daemon.proc.pid}/children") as f:
            (pid,) = f.read().split()
        return int(pid)

    def assert_sandbox(self, pid):
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        self.assertEqual(status["Umask"].strip(), self.settings["UMask"][-1])
        names = harness.run("capsh", f"--decode={status['CapBnd'].strip()}").stdout
        self.assertEqual(set(names.strip().split("=", 1)[1].split(",")), self.caps)
        self.assertEqual(status["CapEff"], status["CapBnd"])
        for ns in ("mnt", "net"):
            self.assertNotEqual(os.readlink(f"/proc/{pid}/ns/{ns}"), os.readlink(f"/proc/self/ns/{ns}"), ns)
        with open(f"/proc/{pid}/mountinfo") as f:
            mounts = {line.split()[4]: line.split()[5] for line in f}
        self.assertTrue(mounts["/etc"].startswith("ro"), mounts["/etc"])

    def cli(self, *args):
        return harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, *args).stdout

    def test_lifecycle_and_optimize(self):
        pid = self.daemon_pid()
        self.addCleanup(lambda: self.daemon.proc.poll() is None and os.kill(pid, signal.SIGTERM))
        self.assert_sandbox(pid)
        tpl = self.make_template()
        self.start(tpl)
        self.write_volume(tpl, "root", 0, harness.compressible("root", 16 * MiB))
        self.stop(tpl)
        vm = self.make_appvm("work", tpl)
        self.start(vm)
        self.write_volume(vm, "private", 0, harness.compressible("private", 8 * MiB))
        private = vm.volumes["private"]
        old = private.size
        loop = harness.run("losetup", "--find", "--show", private.block_device().path).stdout.strip()
        try:
            self.run_async(vm.storage.resize("private", old + 256 * MiB))
            with open(f"/sys/block/{os.path.basename(loop)}/size") as f:
                sectors = int(f.read())
            self.assertEqual(sectors * 512, old + 256 * MiB, "loop device not told")
        finally:
            harness.run("losetup", "-d", loop)
        self.stop(vm)
        self.start(vm)
        self.stop(vm)
        self.run_async(vm.storage.revert("private", next(iter(private.revisions))))
        self.cli("jobs", "--wait")

        outcomes = json.loads(self.cli("optimize", "--full", "--json", self.dir_path))["outcomes"]
        self.assertTrue(outcomes)
        self.assertEqual([o["error"] for o in outcomes], [""] * len(outcomes))
        jobs = json.loads(self.cli("jobs", "--json"))
        self.assertEqual(jobs["counters"]["job_failed"], 0)
        self.assertGreater(jobs["counters"]["job_bytes_saved"], 4 * MiB)
        stats = json.loads(self.cli("stats", "--json", "vdo"))
        self.assertLess(stats["pools"][0]["disk_bytes"], stats["pools"][0]["uncompressed_bytes"])
        self.run_async(vm.storage.remove())
        self.assertFalse(os.path.exists(self.path("appvms", "work")))
        self.assertNotRegex(self.daemon.log(), "level=(ERROR|WARN)")

        os.kill(pid, signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(timeout=60), 0, self.daemon.log()[-3000:])
        used = set()
        with open(self.syscall_log) as f:
            for line in f:
                fields = line.split()
                if len(fields) == 2 and fields[1].isdigit() and fields[0] != "total":
                    used.add(fields[0])
        self.assertIn("ioctl", used)
        self.assertEqual(used - allowed_syscalls(self.settings), set(), "calls SystemCallFilter= refuses")


if __name__ == "__main__":
    unittest.main()
