// SPDX-License-Identifier: GPL-2.0-or-later

package pool_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

// TestUnsavedJobIsNotListed: a job whose state cannot be written (a full
// disk, say) is refused, and no queued job is left behind that nothing
// would run and that btrfs-vdo jobs --wait would wait for forever.
func TestUnsavedJobIsNotListed(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := pool.NewRegistry(log, nil)
	sched := pool.NewScheduler(pool.SchedulerConfig{}, log, nil)
	reg.SetScheduler(sched)
	p, err := reg.Open("p", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	// The state's temp file cannot be created where a directory that is
	// not empty stands.
	if err := os.MkdirAll(filepath.Join(dir, pool.StateDir, "state.json~", "full"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Optimise("appvms/work/private", false); err == nil {
		t.Fatal("Optimise succeeded without saving its job")
	}
	if jobs := sched.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs listed after a failed Optimise: %+v", jobs)
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
			path := filepath.Join(dir, pool.StateDir, "state.json")
			if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(path); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			reg := pool.NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			reg.SetScheduler(pool.NewScheduler(pool.SchedulerConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil))
			p, err := reg.Open("p", dir)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			if n := after.TotalAlloc - before.TotalAlloc; n > 256<<20 {
				t.Errorf("opening the pool allocated %d bytes", n)
			}
			if _, err := os.Stat(path + ".bad"); err != nil {
				t.Errorf("bad state not set aside: %v", err)
			}
			if _, err := p.Optimise("appvms/work/private", false); err != nil {
				t.Errorf("the fresh state cannot be written: %v", err)
			}
		})
	}
}
