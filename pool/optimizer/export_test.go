// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
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
func openRoot(t testing.TB, dir string) *fsroot.Root {
	t.Helper()
	r, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// UsageDelay is how long after a job's end the pool is measured.
const UsageDelay = usageDelay

// UsageMeasurements counts the measurements of p's usage figures since
// it opened.
func UsageMeasurements(p *Pool) uint64 { return p.usage.measurements.Load() }

// UsageWrites counts the writes of p's usage file since it opened.
func UsageWrites(p *Pool) uint64 { return p.usage.writes.Load() }

// IndexCellsUsed returns how many cells p's dedup index holds in memory,
// and in its file, as an index opened from a copy of it in dir holds.
func IndexCellsUsed(t testing.TB, p *Pool, dir string) (inMemory, inFile uint64) {
	t.Helper()
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	if p.index.f == nil {
		t.Fatal("the dedup index is not open")
	}
	_, inMemory, _, _, _, _ = p.index.f.Stats()
	data, err := os.ReadFile(filepath.Join(p.stateDir.Name(), indexName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, indexName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, _, err := dedupindex.Open(openRoot(t, dir), indexName, p.index.f.Size())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, inFile, _, _, _, _ = f.Stats()
	return inMemory, inFile
}
