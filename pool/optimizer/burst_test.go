// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// burstHarness is a pool whose scheduler tells each finished job to
// onDone, if set, before the job's worker goes on.
type burstHarness struct {
	t      *testing.T
	dir    string
	jobs   *optimizer.Scheduler
	p      *pool.Pool
	mu     sync.Mutex
	onDone func(optimizer.JobDone)
}

func newBurstHarness(t *testing.T) *burstHarness {
	dir := filepath.Join(btrfstest.Mount(t, 1<<30), "pool")
	if _, err := pool.Setup(dir, true); err != nil {
		t.Fatal(err)
	}
	h := &burstHarness{t: t, dir: dir}
	d := pooltest.Start(t, pooltest.Options{Optimizer: &optimizer.SchedulerConfig{IdleIO: true}, OnDone: h.done})
	h.jobs = d.Jobs
	var err error
	if h.p, err = d.Pools.Open("vdo", dir); err != nil {
		t.Fatal(err)
	}
	// The pool's open measures it once, in the background: wait for it,
	// so that what follows counts the jobs' measurements alone.
	h.waitMeasurements(1)
	return h
}

func (h *burstHarness) done(d optimizer.JobDone) {
	h.mu.Lock()
	fn := h.onDone
	h.mu.Unlock()
	if fn != nil {
		fn(d)
	}
}

// commit starts s, writes n bytes of text into its dirty image as its VM
// does, and stops it: a commit, and a job after it.
func (h *burstHarness) commit(s volume.Spec, n int) {
	h.t.Helper()
	h.must(h.p.Volumes.Start(s))
	btrfstest.WriteAt(h.t, filepath.Join(h.dir, s.VID+"-dirty.img"), 0, btrfstest.Text(s.VID, n))
	h.must(h.p.Volumes.Stop(s))
}

func (h *burstHarness) must(_ volume.State, err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *burstHarness) wait() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.jobs.Wait(ctx); err != nil {
		h.t.Fatalf("jobs did not finish: %v %+v", err, h.jobs.Jobs())
	}
}

func (h *burstHarness) measurements() uint64 { return optimizer.UsageMeasurements(h.p.Optimizer) }

// waitMeasurements waits until the pool has been measured n times.
func (h *burstHarness) waitMeasurements(n uint64) {
	h.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); h.measurements() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("the pool was measured %d times, want %d", h.measurements(), n)
		}
	}
}

// checkWrittenBack checks that the usage file counts what every job
// saved and that the dedup index file holds what the index does.
func (h *burstHarness) checkWrittenBack() {
	h.t.Helper()
	rec, _ := readUsageRecord(h.t, h.dir)
	if saved := h.jobs.Counters().Get(optimizer.CountJobBytesSaved); rec.Saved != saved || saved <= 0 {
		h.t.Errorf("usage file: saved %d, the jobs saved %d", rec.Saved, saved)
	}
	if inMemory, inFile := optimizer.IndexCellsUsed(h.t, h.p.Optimizer, h.t.TempDir()); inFile != inMemory || inFile == 0 {
		h.t.Errorf("dedup index: %d cells in its file, %d in memory", inFile, inMemory)
	}
}

// The jobs of volumes that stop together measure the pool and write the
// dedup index back once, at the last job's end; jobs that run one at a
// time each do. Every job's outcome is recorded all the same.
func TestJobsStoppedTogetherMeasureThePoolOnce(t *testing.T) {
	tests := []struct {
		name     string
		together bool
		want     uint64 // measurements after the first, the pool open's
	}{
		{"stopped together", true, 1},
		{"stopped one after the other", false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBurstHarness(t)
			if tt.together {
				h.jobs.Pause("test")
			}
			vids := []string{"appvms/a/private", "appvms/b/private", "appvms/c/private"}
			for _, vid := range vids {
				s := spec(vid)
				h.must(h.p.Volumes.Create(s))
				h.commit(s, 8*mib)
				if !tt.together {
					h.wait()
				}
			}
			h.jobs.Resume("test")
			h.wait()
			if got := h.measurements() - 1; got != tt.want {
				t.Errorf("the jobs measured the pool %d times, want %d", got, tt.want)
			}
			if n := h.jobs.Counters().Get(optimizer.CountJobDone); n != int64(len(vids)) {
				t.Errorf("%d jobs done, want %d", n, len(vids))
			}
			done := map[string]bool{}
			for _, d := range h.jobs.Recent() {
				done[d.VID] = d.Err == nil && d.Result.Saved() > 0
			}
			for _, vid := range vids {
				if !done[vid] {
					t.Errorf("no outcome saving space for %s among %+v", vid, h.jobs.Recent())
				}
			}
			h.checkWrittenBack()
		})
	}
}

// A job that leaves measuring to a job queued after it still has the
// pool measured when that job does not run: held by its volume's start,
// before it ran or as the job before it ended.
func TestMeasuringLeftToAHeldJobIsDone(t *testing.T) {
	tests := []struct {
		name string
		// startEarly starts b before the jobs run; else b starts as
		// a's job ends, once a has left measuring to b's.
		startEarly bool
	}{
		{"started before the jobs ran", true},
		{"started as the job before it ended", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBurstHarness(t)
			a, b := spec("appvms/a/private"), spec("appvms/b/private")
			h.must(h.p.Volumes.Create(a))
			h.must(h.p.Volumes.Create(b))
			h.jobs.Pause("test")
			h.commit(a, 8*mib)
			h.commit(b, 8*mib)
			var startB sync.Once
			start := func() { startB.Do(func() { h.must(h.p.Volumes.Start(b)) }) }
			if tt.startEarly {
				start()
			} else {
				h.mu.Lock()
				h.onDone = func(d optimizer.JobDone) {
					if d.VID == a.VID {
						start()
					}
				}
				h.mu.Unlock()
			}
			h.jobs.Resume("test")
			h.wait()
			h.waitMeasurements(2)
			jobs := h.jobs.Jobs()
			if len(jobs) != 1 || jobs[0].VID != b.VID || jobs[0].State != api.JobHeld {
				t.Fatalf("jobs %+v, want b's held", jobs)
			}
			h.checkWrittenBack()

			// b's next commit releases its job, which measures the pool.
			btrfstest.WriteAt(t, filepath.Join(h.dir, b.VID+"-dirty.img"), 0, btrfstest.Text("again", 4*mib))
			h.must(h.p.Volumes.Stop(b))
			h.wait()
			if got := h.measurements(); got != 3 {
				t.Errorf("measured %d times, want 3", got)
			}
			h.checkWrittenBack()
		})
	}
}
