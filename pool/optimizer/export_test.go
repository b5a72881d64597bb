// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// SetSegmentBytes makes the dedup stage cut its passes into segments of n
// bytes of new data until the test ends.
func SetSegmentBytes(t testing.TB, n uint64) {
	old := segmentBytes
	segmentBytes = n
	t.Cleanup(func() { segmentBytes = old })
}

// Raw returns k's value as kept: a time in nanoseconds, which a short
// test may spend less than a millisecond of.
func (c Counters) Raw(k Counter) int64 { return c.v[k] }

// StateWrites counts the writes of p's state file since it opened.
func StateWrites(p *Pool) uint64 { return p.state.lazy.writes.Load() }

// OpenTestPool opens the optimizer's side of the pool directory dir, as
// the registry does, until the test ends; sched may be nil.
func OpenTestPool(t testing.TB, sched *Scheduler, dir string) (*Pool, error) {
	t.Helper()
	root, err := fsroot.Open(dir)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { root.Close() })
	if err := root.Mkdir(volume.StateDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	stateDir, err := root.OpenRoot(volume.StateDir)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { stateDir.Close() })
	p, err := OpenPool(sched, PoolConfig{Name: "test", Dir: root, StateDir: stateDir, Log: logtest.Discard()})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { p.Close() })
	return p, nil
}

// openRoot opens dir as a root until the test ends.
func openRoot(t *testing.T, dir string) *fsroot.Root {
	t.Helper()
	r, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
