// SPDX-License-Identifier: GPL-2.0-or-later

package pool_test

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const mib = 1 << 20

func spec(vid string) volume.Spec {
	return volume.Spec{VID: vid, RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 64 * mib}
}

// A restart keeps the pool open without any request, with its commits
// and bytes saved, and the optimizer's totals and recent outcomes.
func TestRestartKeepsPoolsAndTotals(t *testing.T) {
	h := pooltest.NewHarness(t)
	s := spec("appvms/work/private")
	h.Must(h.P.Volumes.Create(s))
	h.CommitText(s, 16*mib)
	h.Wait()
	commits, saved, counters, recent := h.P.Commits(), h.P.Saved(), h.Jobs.Counters(), h.Jobs.Recent()
	if commits != 1 || saved == 0 || counters.Get(optimizer.CountJobDone) != 1 || len(recent) != 1 {
		t.Fatalf("before the restart: %d commits, %d saved, %+v, %d recent", commits, saved, counters, len(recent))
	}
	h.Close()

	h.Open()
	pools := h.Pools.List()
	if len(pools) != 1 || pools[0].Volumes.Dir() != h.Dir {
		t.Fatalf("pools after the restart: %d", len(pools))
	}
	p := pools[0]
	if p.Commits() != commits || p.Saved() != saved {
		t.Errorf("after the restart: %d commits, %d saved; want %d, %d", p.Commits(), p.Saved(), commits, saved)
	}
	// Times are kept to the millisecond they are reported in.
	if got := h.Jobs.Counters(); !maps.Equal(got.Map(), counters.Map()) {
		t.Errorf("counters after the restart: %+v, want %+v", got, counters)
	}
	got := h.Jobs.Recent()
	if len(got) != 1 || got[0].ID != recent[0].ID || got[0].VID != recent[0].VID || !maps.Equal(got[0].Result.Counters.Map(), recent[0].Result.Counters.Map()) ||
		got[0].Result.Saved() != recent[0].Result.Saved() {
		t.Errorf("recent after the restart: %+v, want %+v", got, recent)
	}
	// Job ids go on from where they were.
	id, err := p.Optimizer.Optimize(s.VID, true)
	if err != nil || id <= recent[0].ID {
		t.Errorf("Optimize after the restart: id %d, %v; want above %d", id, err, recent[0].ID)
	}
}

// restartedRegistry is a daemon start over the state directory state.
func restartedRegistry(t *testing.T, state string) (*pool.Registry, *optimizer.Scheduler) {
	t.Helper()
	d := pooltest.Start(t, pooltest.Options{Optimizer: &optimizer.SchedulerConfig{}, StateDir: state})
	return d.Pools, d.Jobs
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
