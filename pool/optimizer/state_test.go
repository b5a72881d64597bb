// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestUnsavedJobIsNotListed: a commit's job whose state cannot be
// written (a full disk, say) is refused, and no queued job is left behind
// that a crash would lose and that btrfs-vdo jobs --wait would wait for;
// the commit makes the precache itself.
func TestUnsavedJobIsNotListed(t *testing.T) {
	dir := t.TempDir()
	d := pooltest.Start(t, pooltest.Options{Optimizer: &optimizer.SchedulerConfig{}})
	p, err := d.Pools.Open("p", dir)
	if err != nil {
		t.Fatal(err)
	}
	s := volume.Spec{VID: "appvms/work/private", RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 1 << 20}
	for _, op := range []func(volume.Spec) (volume.State, error){p.Volumes.Create, p.Volumes.Start} {
		if _, err := op(s); err != nil {
			t.Fatal(err)
		}
	}
	// The state's temp file cannot be created where a directory that is
	// not empty stands.
	blocker := filepath.Join(dir, volume.StateDir, "state.json~")
	if err := os.MkdirAll(filepath.Join(blocker, "full"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(blocker) }) // before the pool closes: it saves its state
	if _, err := p.Volumes.Stop(s); err != nil {
		t.Fatal(err)
	}
	if jobs := d.Jobs.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs listed after a commit whose job was not saved: %+v", jobs)
	}
	if _, err := os.Stat(filepath.Join(dir, "appvms/work/private-precache.img")); err != nil {
		t.Fatalf("the commit left the precache to a job that was not saved: %v", err)
	}
}

// TestBadStateIsSetAside: a state file the daemon cannot use (torn,
// foreign, or far larger than any it writes) is set aside and the pool
// opens with a fresh state, without reading more than the bound into
// memory: a bad file must not stop the daemon at every start.
func TestBadStateIsSetAside(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(path string) error
	}{
		{"torn", func(path string) error { return os.WriteFile(path, []byte(`{"version": 1, "jobs": [`), 0o600) }},
		{"foreign version", func(path string) error { return os.WriteFile(path, []byte(`{"version": 99}`), 0o600) }},
		{"wrong types", func(path string) error { return os.WriteFile(path, []byte(`{"version": 1, "jobs": 7}`), 0o600) }},
		{"huge", func(path string) error {
			if err := os.WriteFile(path, []byte(`{"version": 1, "jobs": ["`), 0o600); err != nil {
				return err
			}
			return os.Truncate(path, 512<<20) // sparse: NULs after the string's start
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, volume.StateDir, "state.json")
			if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(path); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			d := pooltest.Start(t, pooltest.Options{Optimizer: &optimizer.SchedulerConfig{}})
			p, err := d.Pools.Open("p", dir)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 256<<20 {
				t.Errorf("opening the pool allocated %d bytes", n)
			}
			if _, err := os.Stat(path + ".bad"); err != nil {
				t.Errorf("bad state not set aside: %v", err)
			}
			// A commit's job is written before the commit returns, or not
			// listed at all.
			spec := volume.Spec{VID: "appvms/work/private", RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 1 << 20}
			for _, op := range []func(volume.Spec) (volume.State, error){p.Volumes.Create, p.Volumes.Start, p.Volumes.Stop} {
				if _, err := op(spec); err != nil {
					t.Fatal(err)
				}
			}
			if jobs := d.Jobs.Jobs(); len(jobs) != 1 {
				t.Errorf("the fresh state cannot be written: jobs %+v", jobs)
			}
		})
	}
}
