// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
	estimation "github.com/btrfs-vdo/btrfs-vdo/internal/estimate"
)

// pass is the cost and effect of one pass of a side.
type pass struct {
	benchenv.Phase
	Read          int64 // bytes the tool read from disk (caches dropped first)
	PeakRSS       int64
	Before, After benchenv.Usage
	// btrfs-vdo's counters over the pass: what its dedup stage freed and
	// hashed, what both stages freed, by its own accounting, and the
	// bytes its jobs examined.
	DedupFreed, Hashed, Saved, Examined int64
	// Lookups and Hits count the dedup stage's index lookups that gave an
	// address and those whose bytes matched; DedupeMs is its time in
	// FIDEDUPERANGE.
	Lookups, Hits, DedupeMs int64
	// ColdExamined is the bytes the cold pass examined.
	ColdExamined int64
	// MeasureRead is what the daemon read after the pass, until the pool
	// measurement that follows its jobs in the background was written.
	MeasureRead int64
}

// Freed is the pool's data usage the pass gave back.
func (p pass) Freed() int64 { return p.Before.Disk - p.After.Disk }

// SharingKept is the share of the image/revision sharing before the pass
// not lost by it.
func (p pass) SharingKept() float64 {
	if p.Before.Shared == 0 {
		return 1
	}
	return 1 - float64(p.Before.SharingLost(p.After))/float64(p.Before.Shared)
}

// result is what one side did to its copy of the corpus.
type result struct {
	First, Update pass
	// Cold is btrfs-vdo's cold pass after the update round.
	Cold    pass
	Changed int64 // bytes of the updated images not shared with their revisions
	Index   int64 // btrfs-vdo: size of the dedup index file
	// Daemon and Outside are btrfs-vdo's update round through the daemon
	// (Update is both its passes) and outside it, volume by volume.
	Daemon, Outside updatePath
	// Estimate is btrfs-vdo estimate's report on the pool before the
	// first pass, EstimateWall its time with cold caches.
	Estimate     estimation.Report
	EstimateWall time.Duration
}

// dropCaches writes back and drops the page cache, so the next pass reads
// from disk what it needs.
func dropCaches(mnt string) error {
	if err := benchenv.SyncFS(mnt); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// dupeSide runs the seed recipe on c: duperemove over the pool, the
// update round (a template root and an AppVM private) committed as
// file-reflink does, then duperemove again with the same hashfile.
func dupeSide(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, hashfile, log string) (result, error) {
	var r result
	var err error
	benchenv.Logf("duperemove side: first pass over %s", c.Dir)
	if r.First, err = dupePass(ctx, mnt, c, hashfile, log); err != nil {
		return r, err
	}
	for _, v := range updated(c, target) {
		benchenv.Logf("duperemove side: update round on %s", v.VID)
		if _, err := c.UpdateRound(ctx, v.VID, 1); err != nil {
			return r, err
		}
		if err := benchenv.SyncFS(mnt); err != nil {
			return r, err
		}
		n, err := changedSinceRevision(c, v.VID)
		if err != nil {
			return r, err
		}
		r.Changed += n
	}
	benchenv.Logf("duperemove side: rerun with the same hashfile")
	r.Update, err = dupePass(ctx, mnt, c, hashfile, log)
	return r, err
}

// dupePass measures the pool, runs duperemove over it with cold caches
// and measures it again.
func dupePass(ctx context.Context, mnt string, c *corpus.Corpus, hashfile, log string) (pass, error) {
	var p pass
	var err error
	if p.Before, err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return p, err
	}
	if err := dropCaches(mnt); err != nil {
		return p, err
	}
	logFile, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return p, fmt.Errorf("duperemove log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, "duperemove", "-r", "-d", "--hashfile="+hashfile, "--dedupe-options=same,partial", c.Dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a ^C reaches only the benchmark, which kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.Phase, err = benchenv.Timed(benchenv.ChildrenCPU, cmd.Run); err != nil {
		return p, fmt.Errorf("duperemove (log %s): %w", log, err)
	}
	// The child's own rusage from wait4: maxrss in KiB, inblock in 512-byte
	// units (its read_bytes).
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	p.Read, p.PeakRSS = ru.Inblock*512, ru.Maxrss<<10
	p.After, err = benchenv.Point(ctx, mnt, c, nil)
	return p, err
}

// vdoSide runs btrfs-vdo on c: optimize --full over the pool, then the
// update round through the daemon (start, update the dirty images, stop)
// and the background jobs the commits queued.
func vdoSide(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, d *benchenv.Daemon) (result, error) {
	var r result
	pool, err := d.SetupPool(ctx, c)
	if err != nil {
		return r, err
	}
	if r.First.Before, err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	if err := runEstimate(ctx, mnt, c, &r); err != nil {
		return r, err
	}
	benchenv.Logf("btrfs-vdo side: optimize --full %s", c.Dir)
	if err := daemonPass(ctx, mnt, c.Dir, d, &r.First, func() (benchenv.Phase, error) { return d.OptimizeFull(ctx, c.Dir) }); err != nil {
		return r, err
	}
	if r.First.After, err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}

	if err := daemonUpdate(ctx, mnt, c, pool, target, d, &r); err != nil {
		return r, err
	}
	info, err := os.Stat(filepath.Join(c.Dir, ".btrfs-vdo", "dedup.idx"))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil // no index file: the peak RSS target is then judged against 0
	}
	if err != nil {
		return r, fmt.Errorf("dedup index: %w", err)
	}
	r.Index = info.Size()
	return r, nil
}

// runEstimate estimates, with cold caches, what the first pass will save.
func runEstimate(ctx context.Context, mnt string, c *corpus.Corpus, r *result) error {
	if err := dropCaches(mnt); err != nil {
		return err
	}
	benchenv.Logf("btrfs-vdo side: estimate %s", c.Dir)
	began := time.Now()
	var err error
	r.Estimate, err = estimation.Run(ctx, c.Dir, estimation.Options{Seed: 1})
	r.EstimateWall = time.Since(began)
	return err
}

// daemonPass runs work on the pool at dir with cold caches, after what
// earlier jobs left to the daemon's idle time, and fills p with its
// phase, the daemon's bytes read and peak RSS during it, its counters'
// growth, and what the pool measurement after it read.
func daemonPass(ctx context.Context, mnt, dir string, d *benchenv.Daemon, p *pass, work func() (benchenv.Phase, error)) error {
	if err := d.Settle(ctx); err != nil {
		return err
	}
	measured, err := benchenv.UsageTime(dir)
	if err != nil {
		return err
	}
	if err := dropCaches(mnt); err != nil {
		return err
	}
	var c0, c1 api.JobsResult
	if err := d.Call(ctx, api.OpJobs, api.JobsArgs{}, &c0); err != nil {
		return err
	}
	pid := d.PID()
	if err := benchenv.ResetPeakRSS(pid); err != nil {
		return err
	}
	read0, err := benchenv.ReadBytes(pid)
	if err != nil {
		return err
	}
	if p.Phase, err = work(); err != nil {
		return err
	}
	read1, err := benchenv.ReadBytes(pid)
	if err != nil {
		return err
	}
	p.Read = read1 - read0
	if err := benchenv.WaitMeasured(ctx, dir, measured); err != nil {
		return err
	}
	read2, err := benchenv.ReadBytes(pid)
	if err != nil {
		return err
	}
	p.MeasureRead = read2 - read1
	if p.PeakRSS, err = benchenv.PeakRSS(pid); err != nil {
		return err
	}
	if err := d.Call(ctx, api.OpJobs, api.JobsArgs{}, &c1); err != nil {
		return err
	}
	p.DedupFreed = c1.Counters["dedup_bytes_freed"] - c0.Counters["dedup_bytes_freed"]
	p.Hashed = c1.Counters["dedup_bytes_hashed"] - c0.Counters["dedup_bytes_hashed"]
	p.Saved = c1.Counters["job_bytes_saved"] - c0.Counters["job_bytes_saved"]
	p.Examined = c1.Counters["compress_bytes_examined"] - c0.Counters["compress_bytes_examined"]
	p.ColdExamined = c1.Counters["cold_bytes_examined"] - c0.Counters["cold_bytes_examined"]
	p.Lookups = c1.Counters["dedup_tries"] - c0.Counters["dedup_tries"]
	p.Hits = c1.Counters["dedup_hits"] - c0.Counters["dedup_hits"]
	p.DedupeMs = c1.Counters["dedup_ioctl_ms"] - c0.Counters["dedup_ioctl_ms"]
	return nil
}
