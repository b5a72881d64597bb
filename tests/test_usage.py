# SPDX-License-Identifier: GPL-2.0-or-later
"""qvm-pool info's figures: after the jobs, the shim's usage_details show
what they saved and what compsize counts, answered from the daemon's file
even while the daemon is down, and the saved bytes outlive a restart."""

import glob
import json
import os
import sys
import time

from tests import harness
from tests.base import MiB, IntegrationCase


def compsize_total(paths):
    """compsize --bytes's TOTAL row: disk, uncompressed, referenced."""
    out = harness.run("compsize", "--bytes", *paths).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "TOTAL":
            return tuple(int(p) for p in parts[2:5])
    raise AssertionError(f"no TOTAL in compsize output:\n{out}")


def admin_pool_usage_details(pool):
    """What admin.pool.UsageDetails returns, and qvm-pool info prints."""
    return "".join(f"{key}={value}\n" for key, value in sorted(pool.usage_details.items()))


def close_enough(got, want):
    """Nothing changes once the jobs are done, so the figures agree but for
    what btrfs writes back later (a few blocks at most)."""
    return abs(got - want) <= max(want // 100, 256 << 10)


class UsageDetails(IntegrationCase):

    def pool_files(self):
        """The files the figures cover: every image, revision and precache,
        nothing of .btrfs-vdo/."""
        files = glob.glob(self.path("vm-templates", "*", "*")) + glob.glob(self.path("appvms", "*", "*"))
        return sorted(f for f in files if "~" not in os.path.basename(f))

    def usage_file(self):
        return self.path(".btrfs-vdo", "usage.json")

    def assert_close(self, got, want, what):
        self.assertTrue(close_enough(got, want), f"{what}: {got}, compsize {want}")

    def wait_measured(self, disk, uncompressed, referenced):
        """Wait for the pool measurement that follows the jobs, which the
        daemon makes in the background a second or more after the last
        one ends: until the figures are compsize's."""
        deadline = time.monotonic() + 30
        while True:
            details = self.pool.usage_details
            got = tuple(details.get(k, -1) for k in ("disk_usage", "uncompressed", "referenced"))
            if all(close_enough(g, w) for g, w in zip(got, (disk, uncompressed, referenced))):
                return
            self.assertLess(time.monotonic(), deadline, f"figures {got} never became compsize's")
            time.sleep(0.05)

    def commit_data(self):
        tpl = self.make_template()
        self.start(tpl)
        base = harness.numbered_text("template", 24 * MiB)
        self.write_volume(tpl, "root", 0, base)
        self.stop(tpl)
        self.wait_jobs()
        work = self.make_appvm("work", tpl)
        self.start(work)
        # A copy of the template's data, and text of its own.
        self.write_volume(work, "private", 0, base[:8 * MiB])
        self.write_volume(work, "private", 16 * MiB, harness.numbered_text("work", 8 * MiB))
        self.stop(work)
        self.wait_jobs()
        return work

    def test_saved_and_compsize_figures(self):
        work = self.commit_data()
        disk, uncompressed, referenced = compsize_total(self.pool_files())
        self.wait_measured(disk, uncompressed, referenced)
        details = self.pool.usage_details
        print(f"\nqvm-pool info vdo (usage details):\n{admin_pool_usage_details(self.pool)}", file=sys.stderr)
        self.assertEqual(
            set(details),
            {"data_size", "data_usage", "disk_usage", "uncompressed", "referenced", "saved", "usage_time"},
        )
        for key, value in details.items():
            self.assertIs(type(value), int, key)
        print(f"compsize --bytes TOTAL: disk {disk}, uncompressed {uncompressed}, referenced {referenced}",
              file=sys.stderr)
        self.assert_close(details["disk_usage"], disk, "disk_usage")
        self.assert_close(details["uncompressed"], uncompressed, "uncompressed")
        self.assert_close(details["referenced"], referenced, "referenced")
        self.assertLess(details["disk_usage"] * 2, details["uncompressed"], "not compressed")
        jobs = json.loads(harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket",
                                      self.daemon.socket, "jobs", "--json").stdout)
        self.assertEqual(details["saved"], jobs["counters"]["job_bytes_saved"])
        self.assertGreater(details["saved"], 16 * MiB)
        self.assertLessEqual(abs(details["usage_time"] - time.time()), 120)

        # The daemon down: the same figures, from the file alone.
        self.daemon.stop()
        try:
            down = self.pool.usage_details
            self.assertEqual({k: v for k, v in down.items() if k != "data_usage"},
                             {k: v for k, v in details.items() if k != "data_usage"})
        finally:
            self.daemon.start()

        # The restarted daemon measures the pool when it opens it and keeps
        # the saved bytes counted before.
        before = os.lstat(self.usage_file())
        self.run_async(work.storage.verify())
        deadline = time.monotonic() + 30
        while os.path.samestat(os.lstat(self.usage_file()), before):
            self.assertLess(time.monotonic(), deadline, "the usage file was not rewritten at pool open")
            time.sleep(0.05)
        after = self.pool.usage_details
        self.assertEqual(after["saved"], details["saved"])
        self.assert_close(after["disk_usage"], disk, "disk_usage after the restart")
