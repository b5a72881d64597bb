# SPDX-License-Identifier: GPL-2.0-or-later
"""Load: 16 AppVMs sharing one template run 32 start/stop cycles at once,
over a thousand requests through the shim, while the optimizer compresses
their commits: no deadlock, no error, every byte where it was written,
the daemon's memory bounded. bench/soak runs the same with larger
numbers."""

import asyncio
import json
import os
import sys

from tests import harness, load
from tests.base import IntegrationCase

# The whole run, set-up included, must end within this; a deadlock ends it.
DEADLINE = 300
# The daemon's peak resident set may not exceed this.
MAX_HWM = 256 << 20


class Load(IntegrationCase):
    fs_size = 4 << 30

    def daemon_requests(self):
        out = harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", self.daemon.socket, "status", "--json")
        return json.loads(out.stdout)["requests"]

    def test_many_vms_cycle_at_once(self):
        work = load.Load(self.dir_path, self.qubes_dir, vms=16, queries=20)
        before = self.daemon_requests()

        async def everything():
            await work.setup()
            await work.run(cycles=2)
        self.run_async(asyncio.wait_for(everything(), DEADLINE))
        served = self.daemon_requests() - before
        during = load.jobs(self.daemon.socket)["counters"]["job_done"]
        jobs = load.wait_for_jobs(self.daemon.socket)
        work.verify()
        rss, hwm = load.daemon_memory(self.daemon.proc.pid)

        print(f"\nload: {work.cycles} cycles, {served} requests, daemon RSS {rss >> 20} MiB, peak {hwm >> 20} MiB, "
              f"{during} jobs done during the load and {jobs['counters']['job_done']} in all, "
              f"{jobs['counters']['job_bytes_saved'] >> 20} MiB saved", file=sys.stderr)
        self.assertEqual(work.cycles, 32)
        self.assertGreaterEqual(served, 1000)
        self.assertGreater(during, 0, "no optimizer job ran during the load")
        self.assertEqual(jobs["jobs"], [])
        self.assertEqual(jobs["counters"]["job_failed"], 0)
        self.assertGreater(jobs["counters"]["compress_bytes_compressed"], 0)
        self.assertLess(hwm, MAX_HWM)
