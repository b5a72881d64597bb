# SPDX-License-Identifier: GPL-2.0-or-later
"""bench/soak: many AppVMs sharing one template cycle start/stop through
the shim at once, with queries and backups in between, while the
optimizer compresses what they commit (tests/load.py, with larger numbers
than make test's). Checks as the test does: no error, no deadlock (a
deadline), every byte where it was written, every job done, the daemon's
peak RSS under a bound. Prints throughput, latency per operation and the
daemon's memory over time.

Run as root:
    make bench-soak [BENCH_ARGS="--vms 64 --duration 600"]
"""

import argparse
import asyncio
import json
import os
import sys
import time

import qubes.storage

from tests import harness, load

MiB = 1 << 20


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=48, help="AppVMs on the one template (default 48)")
    p.add_argument("--cycles", type=int, default=8, help="start/stop cycles per VM (default 8)")
    p.add_argument("--duration", type=float, help="cycle for this many seconds instead of --cycles")
    p.add_argument("--queries", type=int, default=20, help="volume.info/status requests per cycle (default 20)")
    p.add_argument("--write-mib", type=int, default=4, help="compressible MiB each cycle writes (default 4)")
    p.add_argument("--fs-gib", type=int, default=16, help="size of the loop-mounted btrfs (default 16)")
    p.add_argument("--sample-every", type=float, default=10, help="seconds between RSS samples (default 10)")
    p.add_argument("--max-rss-mib", type=int, default=512,
                   help="fail if the daemon's peak RSS exceeds this (default 512)")
    p.add_argument("--deadline", type=float, default=3600,
                   help="seconds after which the run counts as deadlocked (default 3600)")
    return p.parse_args()


def status(socket):
    out = harness.run(os.path.join(harness.BIN, "btrfs-vdo"), "--socket", socket, "status", "--json").stdout
    return json.loads(out)


async def sample_rss(pid, every, samples):
    """Append the daemon's RSS to samples every every seconds."""
    while True:
        samples.append(load.daemon_memory(pid)[0])
        await asyncio.sleep(every)


async def soak(work, args, pid, rss_samples):
    began = time.monotonic()
    await work.setup()
    set_up = time.monotonic() - began
    until = time.monotonic() + args.duration if args.duration else None
    sampler = asyncio.create_task(sample_rss(pid, args.sample_every, rss_samples))
    try:
        await work.run(args.cycles, until)
    finally:
        sampler.cancel()
    return set_up


def main():
    args = parse_args()
    with harness.LoopBtrfs(args.fs_gib << 30) as fs, harness.Daemon() as daemon:
        os.environ["BTRFS_VDO_SOCKET"] = daemon.socket
        qubes.storage.VOLUME_STATE_DIR = os.path.join(fs.workdir, "run-qubes")
        os.mkdir(qubes.storage.VOLUME_STATE_DIR)
        work = load.Load(os.path.join(fs.mnt, "pool"), os.path.join(fs.workdir, "qubes"), vms=args.vms,
                         queries=args.queries, write=args.write_mib * MiB)
        before = status(daemon.socket)["requests"]
        began = time.monotonic()
        rss_samples = []
        set_up = asyncio.run(asyncio.wait_for(soak(work, args, daemon.proc.pid, rss_samples), args.deadline))
        ran = time.monotonic() - began - set_up
        served = status(daemon.socket)["requests"] - before
        rss, hwm = load.daemon_memory(daemon.proc.pid)
        waited = time.monotonic()
        jobs = load.wait_for_jobs(daemon.socket)
        drained = time.monotonic() - waited
        work.verify()
        counters = jobs["counters"]
        if jobs["jobs"] or counters["job_failed"]:
            sys.exit(f"soak: jobs left or failed: {json.dumps(jobs, indent=2)}")
        rss_end, hwm_end = load.daemon_memory(daemon.proc.pid)
        if hwm_end > args.max_rss_mib << 20:
            sys.exit(f"soak: the daemon's RSS peaked at {hwm_end >> 20} MiB, above {args.max_rss_mib} MiB")

    print(f"soak: {args.vms} VMs on one template, {work.cycles} start/stop cycles, "
          f"{args.write_mib} MiB written per cycle")
    print(f"set-up {set_up:.1f} s, load {ran:.1f} s, optimizer drained {drained:.1f} s after it")
    print(f"daemon: {served} requests, {served / ran:.0f}/s during the load; "
          f"RSS {rss >> 20} MiB at the end of the load (peak {hwm >> 20} MiB), "
          f"{rss_end >> 20} MiB after the optimizer (peak {hwm_end >> 20} MiB)")
    print(f"daemon RSS every {args.sample_every:g} s of the load, MiB: {' '.join(str(r >> 20) for r in rss_samples)}")
    print(f"optimizer: {counters['job_done']} jobs, examined {counters['compress_bytes_examined'] >> 20} MiB, "
          f"compressed {counters['compress_bytes_compressed'] >> 20} MiB, saved {counters['job_bytes_saved'] >> 20} MiB")
    print(f"\n{'shim call':<12}{'calls':>8}{'median ms':>12}{'p99 ms':>10}{'max ms':>10}")
    for op, (calls, median, p99, worst) in work.figures().items():
        print(f"{op:<12}{calls:>8}{median:>12.1f}{p99:>10.1f}{worst:>10.1f}")
    print("\nall content checked: every region in every VM's committed image is what was written")


if __name__ == "__main__":
    main()
