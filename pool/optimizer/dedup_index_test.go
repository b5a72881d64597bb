// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const mib = 1 << 20

func TestIndexSize(t *testing.T) {
	mnt := btrfstest.Mount(t, 1<<30)
	for i, tc := range []struct {
		name               string
		global, own, other uint64 // configured sizes; own and other override per pool
		old                uint64 // size of an index file already there; 0: none
		want               uint64 // 0: the default for the filesystem
	}{
		{name: "default: sized for the pool's data"},
		{name: "global", global: 8 * mib, want: 8 * mib},
		{name: "pool override", global: 8 * mib, own: 4 * mib, want: 4 * mib},
		{name: "only the named pool's override", global: 8 * mib, other: 4 * mib, want: 8 * mib},
		{name: "override without global", own: 4 * mib, want: 4 * mib},
		{name: "existing index grows", global: 8 * mib, old: 2 * mib, want: 8 * mib},
		{name: "existing index shrinks", global: 2 * mib, old: 8 * mib, want: 2 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(mnt, strconv.Itoa(i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			idxPath := filepath.Join(dir, volume.StateDir, indexName)
			const hash, addr = 0x9e3779b97f4a7c15, 7 * dedupindex.BlockSize
			if tc.old != 0 {
				writeIndex(t, idxPath, tc.old, hash, addr)
			}
			pools := map[string]uint64{}
			if tc.own != 0 {
				pools[dir] = tc.own
			}
			if tc.other != 0 {
				pools["/elsewhere"] = tc.other
			}
			var reported []uint64
			sched := NewScheduler(SchedulerConfig{
				IndexSizes:   IndexSizes{Default: tc.global, Pools: pools},
				OnIndexSized: func(total uint64) { reported = append(reported, total) },
			}, logtest.Discard(), nil)
			p, err := OpenTestPool(t, sched, dir)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == 0 {
				want = dedupindex.DefaultSize(0) // the pool holds no volume
			}
			f, err := p.dedupIndex()
			if err != nil {
				t.Fatal(err)
			}
			if f.Size() != want {
				t.Errorf("index of %d bytes, want %d", f.Size(), want)
			}
			if tc.old != 0 && !slices.Contains(f.Lookup(nil, hash), addr) {
				t.Error("the resized index lost its entry")
			}
			if !slices.Equal(reported, []uint64{want}) {
				t.Errorf("reported %v, want [%d]", reported, want)
			}
			if err := p.closeIndex(); err != nil {
				t.Fatal(err)
			}
			// The file on disk holds an index of that size: opening it at
			// that size neither creates nor converts one.
			f, how, err := dedupindex.Open(openRoot(t, filepath.Dir(idxPath)), indexName, want)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if how != (dedupindex.Opened{}) {
				t.Errorf("file reopened as %+v, want as it was", how)
			}
		})
	}
}

// TestIndexFollowsPoolData: an index not configured is sized by the
// pool's data, so that a small pool's index is a small part of it, and is
// reopened larger between jobs once the data has outgrown it, keeping its
// cells; the memory reported follows.
func TestIndexFollowsPoolData(t *testing.T) {
	dir := t.TempDir()
	p, reported := reportingPool(t, dir)
	writeImage(t, filepath.Join(dir, "appvms", "small", "private.img"), 16*mib)
	const hash, addr = 0x9e3779b97f4a7c15, 7 * dedupindex.BlockSize
	small := useIndex(t, p, func(f *dedupindex.File) { f.Insert(hash, addr) }).Size()
	info, err := os.Stat(filepath.Join(dir, volume.StateDir, indexName))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() > 16*mib/8 {
		t.Errorf("a pool of 16 MiB has an index file of %d bytes, table %d", info.Size(), small)
	}

	writeImage(t, filepath.Join(dir, "appvms", "big", "private.img"), 128*mib)
	f, err := p.dedupIndex()
	if err != nil {
		t.Fatal(err)
	}
	defer p.releaseIndex()
	if want := dedupindex.DefaultSize(144 * mib); f.Size() != want || want < 2*small {
		t.Errorf("index of %d bytes after the pool grew to 144 MiB, want %d (from %d)", f.Size(), want, small)
	}
	if !slices.Contains(f.Lookup(nil, hash), uint64(addr)) {
		t.Error("the grown index lost its entry")
	}
	if want := []uint64{small, f.Size()}; !slices.Equal(*reported, want) {
		t.Errorf("reported %v, want %v", *reported, want)
	}
}

// writeImage writes an image of n bytes of data at path.
func writeImage(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIndexSizedReportsTotal: the scheduler reports the bytes of every
// open index, across pools, and forgets those of closed ones.
func TestIndexSizedReportsTotal(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	var reported []uint64
	sched := NewScheduler(SchedulerConfig{
		IndexSizes:   IndexSizes{Default: 2 * mib, Pools: map[string]uint64{b: 3 * mib}},
		OnIndexSized: func(total uint64) { reported = append(reported, total) },
	}, logtest.Discard(), nil)
	pa, err := OpenTestPool(t, sched, a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := OpenTestPool(t, sched, b)
	if err != nil {
		t.Fatal(err)
	}
	use := func(p *Pool) {
		t.Helper()
		for range 2 { // the second use finds it open
			if _, err := p.dedupIndex(); err != nil {
				t.Fatal(err)
			}
		}
	}
	use(pa)
	use(pb)
	if err := errors.Join(pa.closeIndex(), pb.closeIndex()); err != nil {
		t.Fatal(err)
	}
	use(pa)
	if want := []uint64{2 * mib, 5 * mib, 2 * mib}; !slices.Equal(reported, want) {
		t.Errorf("reported %v, want %v", reported, want)
	}
}

// writeIndex leaves an index of size bytes at path holding hash at addr.
func writeIndex(t *testing.T, path string, size, hash, addr uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	f, _, err := dedupindex.Open(openRoot(t, filepath.Dir(path)), filepath.Base(path), size)
	if err != nil {
		t.Fatal(err)
	}
	f.Insert(hash, addr)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAutoSize(t *testing.T) {
	const want = 4 * mib
	for _, tc := range []struct {
		name          string
		current, size uint64
	}{
		{"no index yet", 0, want},
		{"as wanted", want, want},
		{"data shrank a little", want * 3 / 2, want * 3 / 2},
		{"data grew a little", want/2 + dedupindex.BlockSize, want/2 + dedupindex.BlockSize},
		{"data doubled past it", want / 2, want},
		{"data halved under it", 2 * want, want},
		{"a header claiming a huge table", 1 << 44, want},
	} {
		if got := autoSize(tc.current, want); got != tc.size {
			t.Errorf("%s: autoSize(%d, %d) = %d, want %d", tc.name, tc.current, want, got, tc.size)
		}
	}
}

// Between jobs the index lets go of its file, so that the pool's
// filesystem can be unmounted, but stays in memory: the next job takes it
// up without reading the file, unless the file changed meanwhile. After
// keepIdleIndex it is closed.
func TestIdleIndexStaysInMemory(t *testing.T) {
	dir := t.TempDir()
	p, reported := reportingPool(t, dir)
	writeImage(t, filepath.Join(dir, "appvms", "work", "private.img"), 16*mib)
	path := filepath.Join(dir, volume.StateDir, indexName)
	const hash, addr = 0x9e3779b97f4a7c15, 7 * dedupindex.BlockSize
	first := useIndex(t, p, func(f *dedupindex.File) { f.Insert(hash, addr) })
	if err := p.releaseIdleIndex(); err != nil {
		t.Fatal(err)
	}
	if openFDs(t, path) != 0 {
		t.Fatalf("%s still open after the pool went idle", path)
	}
	if again := useIndex(t, p, nil); again != first || !slices.Contains(again.Lookup(nil, hash), uint64(addr)) {
		t.Fatal("the next job did not take up the index kept in memory, with its entry")
	}

	if err := p.releaseIdleIndex(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past the coarse clock's tick, as any later write
	btrfstest.WriteAt(t, path, 4096, make([]byte, 8))
	if reread := useIndex(t, p, nil); reread == first {
		t.Fatal("an index file changed while detached was not read anew")
	}

	if err := p.releaseIdleIndex(); err != nil {
		t.Fatal(err)
	}
	p.index.detached = time.Now().Add(-keepIdleIndex)
	if err := p.releaseIdleIndex(); err != nil {
		t.Fatal(err)
	}
	if p.index.f != nil || p.index.account.open != 0 {
		t.Fatalf("index kept past keepIdleIndex: %v, %d bytes counted", p.index.f != nil, p.index.account.open)
	}
	if len(*reported) != 2 {
		t.Errorf("index opened %d times (sizes %v), want twice: at first and after its file changed", len(*reported), *reported)
	}
}

// reportingPool opens a pool at dir whose scheduler appends to reported
// the index sizes it reports.
func reportingPool(t *testing.T, dir string) (*Pool, *[]uint64) {
	t.Helper()
	reported := &[]uint64{}
	sched := NewScheduler(SchedulerConfig{OnIndexSized: func(total uint64) { *reported = append(*reported, total) }},
		logtest.Discard(), nil)
	p, err := OpenTestPool(t, sched, dir)
	if err != nil {
		t.Fatal(err)
	}
	return p, reported
}

// useIndex takes the pool's index as a job does, lets use change it, and
// gives it back written back.
func useIndex(t *testing.T, p *Pool, use func(*dedupindex.File)) *dedupindex.File {
	t.Helper()
	f, err := p.dedupIndex()
	if err != nil {
		t.Fatal(err)
	}
	if use != nil {
		use(f)
	}
	p.releaseIndex()
	if err := p.flushIndex(); err != nil {
		t.Fatal(err)
	}
	return f
}

// openFDs counts this process's descriptors open on path.
func openFDs(t *testing.T, path string) int {
	t.Helper()
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && target == path {
			n++
		}
	}
	return n
}
