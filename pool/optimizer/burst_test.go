// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// burstHarness is a pool whose first measurement, the pool open's, is
// done: what follows counts the jobs' measurements alone.
type burstHarness struct{ optHarness }

func newBurstHarness(t *testing.T) burstHarness {
	h := burstHarness{newOptHarness(t)}
	h.waitMeasurements(1)
	return h
}

// checkWrittenBack checks that the usage file counts what every job
// saved and that, once the pool was found idle, as the daemon looks every
// few seconds, the dedup index file holds what the index does.
func (h burstHarness) checkWrittenBack() {
	h.T.Helper()
	// The daemon's idle visit, every few seconds; with a job held it
	// writes the index back all the same but keeps the files open.
	h.P.Optimizer.ReleaseIfIdle()
	rec, _ := readUsageRecord(h.T, h.Dir)
	if saved := h.Jobs.Counters().Get(optimizer.CountJobBytesSaved); rec.Saved != saved || saved <= 0 {
		h.T.Errorf("usage file: saved %d, the jobs saved %d", rec.Saved, saved)
	}
	if inMemory, inFile := optimizer.IndexCellsUsed(h.T, h.P.Optimizer, h.T.TempDir()); inFile != inMemory || inFile == 0 {
		h.T.Errorf("dedup index: %d cells in its file, %d in memory", inFile, inMemory)
	}
}

// The jobs of volumes that stop together have the pool measured once,
// after the last job's end; jobs that run one at a time each do. The
// saved bytes are written as the last job ends. Every job's outcome is
// recorded all the same.
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
			written := optimizer.UsageWrites(h.P.Optimizer)
			if tt.together {
				h.Jobs.Pause("test")
			}
			vids := []string{"appvms/a/private", "appvms/b/private", "appvms/c/private"}
			for _, vid := range vids {
				s := spec(vid)
				h.Must(h.P.Volumes.Create(s))
				measured := h.measurements()
				h.CommitText(s, 8*mib)
				if !tt.together {
					h.Wait()
					h.waitMeasurements(measured + 1)
				}
			}
			h.Jobs.Resume("test")
			h.Wait()
			if tt.together {
				h.checkWrittenBack() // the saved bytes, before any measurement
				h.waitMeasurements(2)
				// A second measurement would follow within the delay
				// that gathers them.
				time.Sleep(2 * optimizer.UsageDelay)
			}
			if got := h.measurements() - 1; got != tt.want {
				t.Errorf("the jobs measured the pool %d times, want %d", got, tt.want)
			}
			// Each measurement writes the file, and so does the job that
			// ends a burst, the others leaving their saved bytes to it.
			if got := optimizer.UsageWrites(h.P.Optimizer) - written; got != 2*tt.want {
				t.Errorf("the usage file was written %d times, want %d", got, 2*tt.want)
			}
			if n := h.Jobs.Counters().Get(optimizer.CountJobDone); n != int64(len(vids)) {
				t.Errorf("%d jobs done, want %d", n, len(vids))
			}
			done := map[string]bool{}
			for _, d := range h.Jobs.Recent() {
				done[d.VID] = d.Err == nil && d.Result.Saved() > 0
			}
			for _, vid := range vids {
				if !done[vid] {
					t.Errorf("no outcome saving space for %s among %+v", vid, h.Jobs.Recent())
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
			h.Must(h.P.Volumes.Create(a))
			h.Must(h.P.Volumes.Create(b))
			h.Jobs.Pause("test")
			h.CommitText(a, 8*mib)
			h.CommitText(b, 8*mib)
			var startB sync.Once
			start := func() { startB.Do(func() { h.Must(h.P.Volumes.Start(b)) }) }
			if tt.startEarly {
				start()
			} else {
				h.OnDone(func(d optimizer.JobDone) {
					if d.VID == a.VID {
						start()
					}
				})
			}
			h.Jobs.Resume("test")
			h.Wait()
			h.waitMeasurements(2)
			jobs := h.Jobs.Jobs()
			if len(jobs) != 1 || jobs[0].VID != b.VID || jobs[0].State != api.JobHeld {
				t.Fatalf("jobs %+v, want b's held", jobs)
			}
			h.checkWrittenBack()

			// b's next commit releases its job, which measures the pool.
			btrfstest.WriteAt(t, filepath.Join(h.Dir, b.VID+"-dirty.img"), 0, btrfstest.Text("again", 4*mib))
			h.Must(h.P.Volumes.Stop(b))
			h.Wait()
			h.waitMeasurements(3)
			time.Sleep(2 * optimizer.UsageDelay)
			if got := h.measurements(); got != 3 {
				t.Errorf("measured %d times, want 3", got)
			}
			h.checkWrittenBack()
		})
	}
}
