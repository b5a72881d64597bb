# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon remembers the pools it serves across restarts: it opens them
at start and resumes their pending jobs without waiting for a request,
and keeps each pool's commits and the optimizer's totals and recent
outcomes. Jobs are queued only for volumes a job can work on."""

import json
import os
import time

from qubes.tests import fakes

from tests import harness
from tests.base import MiB, IntegrationCase

FAILPOINT_ENV = "BTRFS_VDO_FAILPOINT"


class Remember(IntegrationCase):
    def cli(self, *args):
        return harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, *args).stdout

    def restart(self, env=None):
        self.daemon.stop()
        self.daemon.env = env or {}
        self.daemon.start()

    def pool_status(self):
        pools = json.loads(self.cli("status", "--json"))["pools"]
        return next((p for p in pools if p["dir_path"] == self.dir_path), None)

    def commit_work(self, name="work"):
        """A VM that wrote into its private volume and shut down."""
        template = self.make_template(f"{name}-tpl")
        vm = self.make_appvm(name, template)
        self.start(vm)
        self.write_volume(vm, "private", 0, os.urandom(MiB) + b"compressible " * (2 * MiB // 13))
        self.stop(vm)
        return vm

    def test_restart_keeps_pool_commits_and_history(self):
        self.commit_work()
        self.wait_jobs()
        before = json.loads(self.cli("jobs", "--json"))
        commits = self.pool_status()["commits"]
        self.assertGreater(commits, 0)
        self.assertTrue(before["recent"])

        self.restart()
        status = self.pool_status()
        self.assertIsNotNone(status, "the pool is not known after a restart")
        self.assertEqual(status["commits"], commits)
        stats = json.loads(self.cli("stats", "--json", self.dir_path))
        self.assertTrue(stats["volumes"], "stats of the pool after a restart")
        after = json.loads(self.cli("jobs", "--json"))
        self.assertEqual(after["counters"], before["counters"])
        self.assertEqual(after["recent"], before["recent"])

    def test_pending_job_resumes_at_start(self):
        # The daemon dies in the commit's job, which stays pending.
        self.restart({FAILPOINT_ENV: "optimize.after-plan"})
        template = self.make_template("pending-tpl")
        vm = self.make_appvm("pending", template)
        self.start(vm)
        self.write_volume(vm, "private", 0, b"compressible " * (2 * MiB // 13))
        self.stop(vm)
        self.daemon.proc.wait(timeout=60)
        log_start = len(self.daemon.log())
        self.restart()
        # No request names the pool: only the daemon's memory opens it.
        self.cli("jobs", "--wait")
        jobs = json.loads(self.cli("jobs", "--json"))
        self.assertEqual(jobs["jobs"], [])
        self.assertIn("appvms/pending/private", [j["vid"] for j in jobs["recent"] if not j["error"]],
                      "the pending job did not resume at start")
        self.assertIn("opened pool", self.daemon.log()[log_start:])

    def test_removed_pool_is_forgotten(self):
        self.commit_work()
        self.wait_jobs()
        self.daemon.stop()
        harness.run("mv", self.dir_path, self.dir_path + ".moved")
        self.daemon.start()
        self.assertIsNone(self.pool_status(), "a removed pool is still served")
        self.assertIn("forgetting pool: its directory is gone", self.daemon.log())
        with open(os.path.join(self.daemon.state_dir, "pools.json"), encoding="utf-8") as f:
            self.assertNotIn(self.dir_path, [p["dir"] for p in json.load(f)["pools"]])

    def test_no_job_for_running_or_uncommitted_volumes(self):
        template = self.make_template("busy-tpl")
        vm = self.make_appvm("busy", template)
        self.start(vm)
        self.write_volume(vm, "private", 0, b"compressible " * (MiB // 13))
        self.write_volume(vm, "volatile", 0, b"compressible " * (MiB // 13))
        self.wait_jobs()
        out = json.loads(harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket,
                                     "optimize", "--json", "busy", check=False).stdout or "{}")
        queued = [j["vid"] for j in out.get("queued", [])]
        self.assertEqual(queued, [], "jobs queued for a running VM's volumes")
        self.assertEqual(json.loads(self.cli("jobs", "--json"))["jobs"], [])
        self.stop(vm)
        self.wait_jobs()
        jobs = json.loads(self.cli("jobs", "--json"))
        self.assertEqual(jobs["jobs"], [], "a job lingers after the VM stopped")


class Unmount(IntegrationCase):
    """An idle pool does not keep its filesystem busy."""

    def test_umount_when_idle(self):
        fs = harness.LoopBtrfs(1 << 30)
        self.addCleanup(fs.close)
        self.dir_path = os.path.join(fs.mnt, "pool")
        self.pool = self.make_pool()
        self.run_async(self.pool.setup())
        self.app = fakes.FakeApp([self.pool], default_pool=self.pool)
        template = self.make_template("idle-tpl")
        vm = self.make_appvm("idle", template)
        self.start(vm)
        self.write_volume(vm, "private", 0, b"compressible " * (MiB // 13))
        self.stop(vm)
        self.wait_jobs()

        # The daemon lets go of an idle pool within pool.IdleRelease (5 s).
        for _ in range(100):
            if harness.run("umount", fs.mnt, check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            self.fail(f"umount failed while the daemon runs; it holds {self.fuser(fs.mnt)}")
        self.assertIsNone(self.daemon.proc.poll(), "the daemon died")

        harness.run("mount", "-o", "loop", fs.image, fs.mnt)
        self.start(vm)
        self.stop(vm)
        self.wait_jobs()
        jobs = json.loads(self.cli("jobs", "--json"))
        self.assertEqual([j["error"] for j in jobs["recent"] if j["error"]], [])
        self.assertIsNotNone(self.pool_status(), "the pool is not served after the remount")

    def fuser(self, mnt):
        """What the daemon holds open on the filesystem at mnt."""
        fds = f"/proc/{self.daemon.proc.pid}/fd"
        return [link for link in (os.readlink(os.path.join(fds, fd)) for fd in os.listdir(fds))
                if link.startswith(mnt)]

    cli = Remember.cli
    pool_status = Remember.pool_status
