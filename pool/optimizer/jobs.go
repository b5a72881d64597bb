// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"context"
	"sort"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// Job is one volume's pending optimization, as persisted in the pool's
// state so a daemon restart resumes it.
type Job struct {
	// ID tells this job's outcome from other runs on the same volume; it
	// is unique among the jobs of the daemon's pools.
	ID  uint64 `json:"id,omitempty"`
	VID string `json:"vid"`
	// Since is the filesystem generation from which extents are new; 0
	// covers the whole image.
	Since uint64 `json:"since"`
	// DiffRevision: no start generation was recorded, so new extents are
	// those the newest revision does not reference.
	DiffRevision bool `json:"diff_revision,omitempty"`
	// Full also rewrites extents shared with the volume's own revisions and
	// precache, and works on the revisions too (optimize --full). It takes
	// each file from where the last full pass through it stopped (see
	// fileMark).
	Full bool `json:"full,omitempty"`
	// Precache: make the precache when done (the commit left it for us).
	Precache bool `json:"precache,omitempty"`
	// Cold: a cold pass (cold.go), queued when no other job waits; it
	// does nothing else.
	Cold bool `json:"cold,omitempty"`
	// Held: the volume started before the job finished; it waits for the
	// next commit, which merges into it.
	Held   bool      `json:"held,omitempty"`
	Queued time.Time `json:"queued"`
}

// merge folds a newer job for the same volume into j: the older start
// generation still covers every extent neither job has finished, since
// everything written later has a higher generation, whether or not the
// newer job recorded its own. An older job that recorded none found its
// data as what the newest revision lacks; the newer commit made the image
// holding that data the newest revision, so only a pass over the whole
// image still finds it.
func (j Job) merge(newer Job) Job {
	switch {
	case j.DiffRevision:
		j.Since, j.DiffRevision = 0, false
	case !newer.DiffRevision && newer.Since < j.Since:
		j.Since = newer.Since
	}
	j.Full = j.Full || newer.Full
	j.Precache = j.Precache || newer.Precache
	j.Held = false
	return j
}

// JobStatus describes a queued or running job.
type JobStatus struct {
	ID        uint64
	Pool      string
	Dir       string
	VID       string
	State     api.JobState
	DoneBytes uint64
	Total     uint64
	Queued    time.Time
}

// JobDone reports a finished job.
type JobDone struct {
	ID       uint64
	Pool     string
	Dir      string
	VID      string
	Cold     bool // a cold pass
	Finished time.Time
	Result   Result
	Err      error
}

// Jobs lists queued, running and held jobs of every pool.
func (s *Scheduler) Jobs() []JobStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JobStatus
	for dir, p := range s.pools {
		for _, job := range p.jobs() {
			st := JobStatus{ID: job.ID, Pool: p.Name, Dir: dir, VID: job.VID, State: api.JobQueued, Queued: job.Queued}
			// A job merged into while running waits for the run to end.
			if run, ok := s.running[jobKey{dir, job.VID}]; ok && run.id == job.ID {
				st.State, st.DoneBytes, st.Total = api.JobRunning, run.done, run.total
			}
			switch {
			case job.Held:
				st.State = api.JobHeld
			case len(s.paused) > 0 && st.State == api.JobQueued:
				st.State = api.JobPaused
			}
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Queued.Before(out[j].Queued) })
	return out
}

// Recent returns the last finished jobs, oldest first.
func (s *Scheduler) Recent() []JobDone {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]JobDone(nil), s.recent...)
}

// Paused reports whether jobs are paused.
func (s *Scheduler) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.paused) > 0
}

// Changed returns a channel that is closed at the next change of the
// jobs' states: queued, started, held, finished, paused or resumed.
func (s *Scheduler) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Counters returns the totals since the daemon started.
func (s *Scheduler) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Wait returns when no job of the given volumes (all, if none given) is
// queued or running — held jobs do not count — or when ctx is done.
func (s *Scheduler) Wait(ctx context.Context, keys ...JobStatus) error {
	for {
		s.mu.Lock()
		busy, changed := false, s.changed
		for _, st := range s.jobsLocked() {
			if st.State != api.JobHeld && matches(keys, st) {
				busy = true
			}
		}
		s.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

func (s *Scheduler) jobsLocked() []JobStatus {
	var out []JobStatus
	for dir, p := range s.pools {
		for _, job := range p.jobs() {
			state := api.JobQueued
			if job.Held {
				state = api.JobHeld
			}
			out = append(out, JobStatus{Dir: dir, VID: job.VID, State: state})
		}
	}
	return out
}

func matches(keys []JobStatus, st JobStatus) bool {
	if len(keys) == 0 {
		return true
	}
	for _, k := range keys {
		if k.Dir == st.Dir && (k.VID == "" || k.VID == st.VID) {
			return true
		}
	}
	return false
}

// Restore takes up the totals and recent outcomes from before a restart,
// and hands out new ids above theirs.
func (s *Scheduler) Restore(c Counters, recent []JobDone) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = c
	s.recent = append(recent, s.recent...)
	if len(s.recent) > recentJobs {
		s.recent = s.recent[len(s.recent)-recentJobs:]
	}
	for _, d := range s.recent {
		s.lastID = max(s.lastID, d.ID)
	}
}
