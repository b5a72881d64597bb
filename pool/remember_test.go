// SPDX-License-Identifier: GPL-2.0-or-later

package pool_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// commitData starts vid, writes n bytes of text into it and stops it.
func (h *optHarness) commitData(s volume.Spec, n int) {
	h.t.Helper()
	h.must(h.p.Volumes.Start(s))
	writeAt(h.t, h.path(s.VID+"-dirty.img"), 0, text(s.VID, n))
	h.must(h.p.Volumes.Stop(s))
}

// A restart keeps the pool open without any request, with its commits
// and bytes saved, and the optimizer's totals and recent outcomes.
func TestRestartKeepsPoolsAndTotals(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/work/private")
	h.must(h.p.Volumes.Create(s))
	h.commitData(s, 16*mib)
	h.wait()
	commits, saved, counters, recent := h.p.Commits(), h.p.Saved(), h.sched.Counters(), h.sched.Recent()
	if commits != 1 || saved == 0 || counters.JobsDone != 1 || len(recent) != 1 {
		t.Fatalf("before the restart: %d commits, %d saved, %+v, %d recent", commits, saved, counters, len(recent))
	}
	h.close()

	h.open()
	pools := h.reg.List()
	if len(pools) != 1 || pools[0].Volumes.Dir() != h.dir {
		t.Fatalf("pools after the restart: %d", len(pools))
	}
	p := pools[0]
	if p.Commits() != commits || p.Saved() != saved {
		t.Errorf("after the restart: %d commits, %d saved; want %d, %d", p.Commits(), p.Saved(), commits, saved)
	}
	if got := h.sched.Counters(); got != counters {
		t.Errorf("counters after the restart: %+v, want %+v", got, counters)
	}
	got := h.sched.Recent()
	if len(got) != 1 || got[0].ID != recent[0].ID || got[0].VID != recent[0].VID || got[0].Result != recent[0].Result {
		t.Errorf("recent after the restart: %+v, want %+v", got, recent)
	}
	// Job ids go on from where they were.
	id, err := p.Optimise(s.VID, true)
	if err != nil || id <= recent[0].ID {
		t.Errorf("Optimise after the restart: id %d, %v; want above %d", id, err, recent[0].ID)
	}
}

// restartedRegistry is a daemon start over the state directory state.
func restartedRegistry(t *testing.T, state string) (*pool.Registry, *pool.Scheduler) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := pool.NewRegistry(log, nil)
	sched := pool.NewScheduler(pool.SchedulerConfig{}, log, reg.JobDone)
	reg.SetScheduler(sched)
	if err := reg.Remember(state); err != nil {
		t.Fatal(err)
	}
	reg.Restore()
	t.Cleanup(func() { reg.Close() })
	return reg, sched
}

// knownDirs lists the pool directories the daemon remembers in state.
func knownDirs(t *testing.T, state string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(state, "pools.json"))
	if err != nil {
		t.Fatal(err)
	}
	var known struct{ Pools []struct{ Dir string } }
	if err := json.Unmarshal(data, &known); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, p := range known.Pools {
		dirs = append(dirs, p.Dir)
	}
	return dirs
}

// A pool whose directory is removed is forgotten; one whose directory is
// replaced by another is served from the new directory, never through
// the old one's handle, whether it happens while the daemon runs or
// while it is down.
func TestMovedPoolDirectory(t *testing.T) {
	const oldVID = "appvms/old/private"
	for _, tt := range []struct {
		name             string
		replace, restart bool
	}{
		{"removed while running", false, false},
		{"removed while down", false, true},
		{"replaced while running", true, false},
		{"replaced while down", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			state, dir := t.TempDir(), filepath.Join(t.TempDir(), "pool")
			if _, err := pool.Setup(dir, false); err != nil {
				t.Fatal(err)
			}
			reg, _ := restartedRegistry(t, state)
			p, err := reg.Open("vdo", dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Volumes.Create(spec(oldVID)); err != nil {
				t.Fatal(err)
			}
			if tt.restart {
				reg.Close()
			}
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if tt.replace {
				if _, err := pool.Setup(dir, false); err != nil {
					t.Fatal(err)
				}
			}
			if tt.restart {
				reg, _ = restartedRegistry(t, state)
			}
			pools := reg.List()
			if !tt.replace {
				if len(pools) != 0 || slices.Contains(knownDirs(t, state), dir) {
					t.Fatalf("a removed pool is still served (%d pools) or remembered (%v)", len(pools), knownDirs(t, state))
				}
				return
			}
			if len(pools) != 1 || pools[0] == p {
				t.Fatalf("after the replacement: %d pools, the old one: %v", len(pools), len(pools) == 1 && pools[0] == p)
			}
			vids, err := pools[0].Volumes.List()
			if err != nil || slices.Contains(vids, oldVID) {
				t.Fatalf("the replaced pool is served from the old directory: volumes %v, %v", vids, err)
			}
			if again, err := reg.Open("vdo", dir); err != nil || again != pools[0] {
				t.Fatalf("Open after the replacement: %v", err)
			}
			if !slices.Equal(knownDirs(t, state), []string{dir}) {
				t.Errorf("remembered pools: %v", knownDirs(t, state))
			}
		})
	}
}

// A job is queued only for what a job can work on: not for a running
// volume (its commit queues one), nor for one without committed data (a
// volatile or snapshot volume, whose job would wait for a commit that
// never comes).
func TestNoJobForRunningOrUncommittedVolumes(t *testing.T) {
	h := newOptHarness(t)
	origin, volatile := spec("appvms/work/private"), volume.Spec{VID: "appvms/work/volatile", RW: true, Size: 8 * mib}
	snapshot := volume.Spec{VID: "appvms/work/root", RW: true, SnapOnStart: true, Source: "vm-templates/fedora/root", Size: 8 * mib}
	template := spec("vm-templates/fedora/root")
	for _, s := range []volume.Spec{origin, volatile, snapshot, template} {
		h.must(h.p.Volumes.Create(s))
	}
	h.commitData(template, mib)
	h.wait()
	h.sched.Pause("test")
	for _, s := range []volume.Spec{origin, volatile, snapshot} {
		h.must(h.p.Volumes.Start(s))
	}
	if jobs := h.sched.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs before optimize: %+v", jobs)
	}
	vols, err := h.reg.Resolve("work")
	if err != nil || len(vols) != 3 {
		t.Fatalf("Resolve(work) = %d volumes, %v", len(vols), err)
	}
	for _, v := range vols {
		if _, err := v.Pool.Optimise(v.VID, true); !errors.Is(err, pool.ErrNotOptimizable) {
			t.Errorf("Optimise(%s) = %v, want ErrNotOptimizable", v.VID, err)
		}
	}
	for _, s := range []volume.Spec{origin, volatile, snapshot} {
		h.must(h.p.Volumes.Stop(s))
	}
	if _, err := h.p.Optimise(volatile.VID, false); !errors.Is(err, pool.ErrNotOptimizable) {
		t.Errorf("Optimise(stopped volatile) = %v, want ErrNotOptimizable", err)
	}
	h.sched.Resume("test")
	h.wait()
	if jobs := h.sched.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs left: %+v", jobs)
	}
}

// A volume with snapshots disabled holds its job while it runs; the job
// runs after the volume stops, instead of waiting for a commit forever,
// and the stop's new data is optimized.
func TestHeldJobOfVolumeWithoutSnapshotsRunsAfterStop(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/work/private")
	s.RevisionsToKeep = -1
	h.must(h.p.Volumes.Create(s))
	h.commitData(s, 16*mib)
	h.wait()
	h.sched.Pause("test")
	if _, err := h.p.Optimise(s.VID, true); err != nil {
		t.Fatal(err)
	}
	h.must(h.p.Volumes.Start(s))
	if jobs := h.sched.Jobs(); len(jobs) != 1 || jobs[0].State != "held" {
		t.Fatalf("jobs while the volume runs: %+v", jobs)
	}
	h.must(h.p.Volumes.Stop(s))
	h.sched.Resume("test")
	h.wait()
	if jobs := h.sched.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs lingering after the stop: %+v", jobs)
	}
	if z := zstdBytes(measure(t, h.path(s.VID+".img"))); z < 15*mib {
		t.Errorf("the held job did not run: %d bytes zstd", z)
	}
}

// An optimize of many volumes writes the pool's state a few times, not
// once per job; a commit's job is on disk before the commit returns.
func TestQueuedJobsCoalesceStateWrites(t *testing.T) {
	h := newOptHarness(t)
	h.sched.Pause("test")
	const volumes = 300
	for i := range volumes {
		s := spec(fmt.Sprintf("appvms/vm%d/private", i))
		h.must(h.p.Volumes.Create(s))
	}
	before := pool.StateWrites(h.p)
	vols, err := h.reg.Resolve("")
	if err != nil || len(vols) != volumes {
		t.Fatalf("Resolve = %d volumes, %v", len(vols), err)
	}
	for _, v := range vols {
		if _, err := v.Pool.Optimise(v.VID, true); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // the last batch is written
	if n := pool.StateWrites(h.p) - before; n == 0 || n > volumes/10 {
		t.Errorf("%d state writes for %d queued jobs", n, volumes)
	}
	data, err := os.ReadFile(filepath.Join(h.dir, pool.StateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Jobs []pool.Job }
	if err := json.Unmarshal(data, &st); err != nil || len(st.Jobs) != volumes {
		t.Fatalf("state.json holds %d jobs, %v", len(st.Jobs), err)
	}

	s := spec("appvms/vm0/private")
	before = pool.StateWrites(h.p)
	h.commitData(s, mib)
	if pool.StateWrites(h.p) == before {
		t.Error("the commit returned before its job was written")
	}
}
