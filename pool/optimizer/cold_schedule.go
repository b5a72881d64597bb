// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// coldRecheck is how often an idle scheduler looks for data that turned
// cold with time alone.
const coldRecheck = time.Hour

// queueCold queues the cold pass of one volume whose data turned cold,
// if the policy is on, and reports whether it did. It is called when no
// job is runnable.
func (s *Scheduler) queueCold() bool {
	if !s.cfg.Cold.Enabled {
		return false
	}
	s.mu.Lock()
	if len(s.paused) > 0 || len(s.running) > 0 {
		s.mu.Unlock()
		return false
	}
	pools := make([]*Pool, 0, len(s.pools))
	for _, p := range s.pools {
		pools = append(pools, p)
	}
	s.mu.Unlock()
	slices.SortFunc(pools, func(a, b *Pool) int { return cmp.Compare(a.Name, b.Name) })
	now := time.Now()
	for _, p := range pools {
		vid, ok := p.coldDue(s.cfg.Cold, now)
		if !ok {
			continue
		}
		s.put(p, Job{VID: vid, Cold: true, Queued: now.UTC()})
		return true
	}
	return false
}

// cancelColdLocked stops the running cold passes of the pool at dir, or
// of every pool for "": another job, or a start, comes first.
func (s *Scheduler) cancelColdLocked(dir string) {
	for key, run := range s.running {
		if run.cold && (dir == "" || key.dir == dir) && run.cancel != nil {
			run.cancel()
		}
	}
}

// coldEncoder makes a cold pass's encoder. Work that waits for idle time
// compresses on one CPU, leaving the others to the VMs, and in whole
// units: the cold level costs about seven times level 3, and trying
// halves would cost it twice that.
//
// The encoder is the run's alone, and the memory limit has room for it
// until release is called, when the run ends: from level 10 up its tables
// take 35 MiB. Kept past the run, they held the heap at the daemon's
// memory limit, and every later job collected garbage all along (a
// template update's job took four times as long after a cold pass);
// uncounted during it, the pass collected some 150 times a second.
func (s *Scheduler) coldEncoder() (enc *copyEncoder, release func()) {
	enc = newCopyEncoder(s.cfg.Cold.Level, s.cfg.MinCompressSaving, 1, s.onPlain)
	enc.wholeUnits = true
	return enc, s.indexes.hold(enc.tableBytes())
}

// runCold runs a cold pass. Cut short by another job or a start, it is
// dropped: the next idle moment judges the volume again.
func (s *Scheduler) runCold(ctx, jobCtx context.Context, run *runningJob, p *Pool, job Job) {
	began := time.Now()
	enc, release := s.coldEncoder()
	defer release()
	// Nothing is rewritten by range defrag, whose level onLevel is told of.
	r := newJobRun(p, job, s.cfg.Cold.Level, enc, func(error) {})
	r.dedup = newDeduper(r)
	defer r.dedup.finish()
	res, err := r.executeCold(jobCtx, s.progress(jobCtx, run))
	s.account(run, res)
	key := jobKey{p.Volumes.Dir(), job.VID}
	p.jobEnded(res.Saved(), ctx.Err() == nil, !s.followed(key))
	if jobCtx.Err() != nil || errors.Is(err, errHeld) {
		p.finishJob(job)
		s.log.Info("cold pass gave way", "pool", p.Name, "vid", job.VID, "saved", res.Saved())
		return
	}
	done := s.recordOutcome(key, p, job, res, err)
	if err != nil {
		s.log.Error("cold pass failed", "pool", p.Name, "vid", job.VID, "err", err)
		p.coldFailed(job.VID, s.cfg.Cold)
	} else {
		c := res.Counters
		s.log.Info("recompressed cold data", "pool", p.Name, "vid", job.VID,
			"examined", c.Get(CountColdBytesExamined), "recompressed", c.Get(CountColdBytesRecompressed),
			"skipped_shared", c.Get(CountColdBytesSkippedShared), "saved", res.Saved(),
			"ms", time.Since(began).Milliseconds(), r.phases.attr())
	}
	s.onDone(done)
}

// rested records that a job of vid ended at gen, for the cold pass.
func (p *Pool) rested(vid string, gen uint64) {
	if p.sched == nil || !p.sched.cfg.Cold.Enabled || gen == 0 {
		return
	}
	now := time.Now().UTC()
	p.state.updateSoon(func(s *state) { s.Cold[vid] = s.Cold[vid].rested(gen, now) })
}

// coldDue returns a volume of the pool whose data turned cold since its
// last cold pass, that has no job and does not run.
func (p *Pool) coldDue(pol ColdPolicy, now time.Time) (string, bool) {
	st := p.state.read()
	vids := make([]string, 0, len(st.Cold))
	for vid, m := range st.Cold {
		if m.due(pol, now) && !slices.ContainsFunc(st.Jobs, func(j Job) bool { return j.VID == vid }) {
			vids = append(vids, vid)
		}
	}
	slices.Sort(vids)
	for _, vid := range vids {
		if running, err := p.Volumes.Running(vid); err == nil && !running {
			return vid, true
		}
	}
	return "", false
}

// coldFailed skips what turned cold in vid: a pass that failed would
// only fail again at once. The next data to turn cold is tried.
func (p *Pool) coldFailed(vid string, pol ColdPolicy) {
	now := time.Now()
	p.state.updateSoon(func(s *state) {
		if m, ok := s.Cold[vid]; ok {
			m.Through = max(m.Through, m.threshold(pol, now))
			s.Cold[vid] = m
		}
	})
}

// OptimizeCold queues a cold pass over the volume vid of every compressed
// extent of its image and revisions not yet through one, whatever its
// age, and returns the id of the job that covers the request: a job
// pending for the volume runs first, and the pass follows it once the
// scheduler is idle.
func (p *Pool) OptimizeCold(vid string) (uint64, error) {
	if p.sched == nil {
		return 0, errors.New("optimization is disabled")
	}
	if err := p.optimizable(vid); err != nil {
		return 0, err
	}
	dir, err := p.openDir()
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	gen, err := btrfs.Generation(dir)
	if err != nil {
		return 0, err
	}
	// Durable before the reply, as the request's only record.
	err = p.state.update(func(s *state) {
		m := s.Cold[vid]
		m.Asked = max(m.Asked, gen)
		s.Cold[vid] = m
	})
	if err != nil {
		return 0, err
	}
	return p.sched.put(p, Job{VID: vid, Cold: true, Queued: time.Now().UTC()}), nil
}
