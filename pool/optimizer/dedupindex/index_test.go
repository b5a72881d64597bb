// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func newIndex(t testing.TB, size uint64) *Index {
	t.Helper()
	x, err := New(size)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// addr returns the i-th test address.
func addr(i int) uint64 { return uint64(i+1) * BlockSize }

// spread returns distinct hashes spread over the buckets.
func spread(i int) uint64 { return uint64(i) * 0x9e3779b97f4a7c15 }

// contents returns the stored cells of bucket bi, front first.
func contents(x *Index, bi uint64) [][2]uint64 {
	b := x.bucket(bi)
	var cells [][2]uint64
	for i := range b.used() {
		cells = append(cells, [2]uint64{b.hash(i), b.word(i)})
	}
	return cells
}

// checkAll verifies every bucket's invariants and the used counter.
func checkAll(t *testing.T, x *Index) {
	t.Helper()
	var stored uint64
	for bi := range x.nbuckets {
		n, err := x.bucket(bi).check(bi, x.nbuckets)
		if err != nil {
			t.Fatalf("bucket %d: %v", bi, err)
		}
		stored += uint64(n)
	}
	if _, used, _, _, _, _ := x.Stats(); used != stored {
		t.Fatalf("Stats used = %d, buckets hold %d", used, stored)
	}
}

func TestDefaultSize(t *testing.T) {
	for _, tc := range []struct {
		pool, want uint64
	}{
		{0, 256 << 10},
		{16 << 20, 256 << 10},
		{64 << 20, 512 << 10},
		{1 << 30, 8 << 20},
		{1<<30 + 1, 8<<20 + bucketBytes}, // rounded up to whole buckets
		{4 << 30, 32 << 20},
		{250e9, 32 << 20},
		{1e12, 128 << 20},
		{1.5e12, 192 << 20},
		{2e12, 256 << 20},
		{1e12 + 1, 128<<20 + bucketBytes}, // rounded up to whole buckets
	} {
		if got := DefaultSize(tc.pool); got != tc.want {
			t.Errorf("DefaultSize(%d) = %d, want %d", tc.pool, got, tc.want)
		}
	}
	if got := DefaultSize(math.MaxUint64); got%bucketBytes != 0 || got < 1<<50 {
		t.Errorf("DefaultSize(MaxUint64) = %d", got)
	}
}

func TestNewRejectsBadSizes(t *testing.T) {
	for _, size := range []uint64{0, 100, bucketBytes + 1, math.MaxUint64} {
		if _, err := New(size); err == nil {
			t.Errorf("New(%d) succeeded", size)
		}
	}
}

func TestInsertLookupErase(t *testing.T) {
	type op struct {
		do   string // insert, useful, erase, lookup
		hash uint64
		addr uint64
		ok   bool     // useful, erase: the cell was stored
		want []uint64 // lookup
	}
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"miss on empty", []op{
			{do: "lookup", hash: 1},
		}},
		{"hit", []op{
			{do: "insert", hash: 1, addr: addr(1)},
			{do: "lookup", hash: 1, want: []uint64{addr(1)}},
			{do: "lookup", hash: 2},
		}},
		{"hash zero and address zero are storable", []op{
			{do: "insert", hash: 0, addr: 0},
			{do: "lookup", hash: 0, want: []uint64{0}},
			{do: "lookup", hash: 1, want: []uint64{0}}, // a collision
			{do: "erase", hash: 0, addr: 0, ok: true},
			{do: "lookup", hash: 0},
		}},
		{"several addresses newest first", []op{
			{do: "insert", hash: 7, addr: addr(1)},
			{do: "insert", hash: 7, addr: addr(2)},
			{do: "insert", hash: 7, addr: addr(3)},
			{do: "lookup", hash: 7, want: []uint64{addr(3), addr(2), addr(1)}},
		}},
		{"useful moves ahead", []op{
			{do: "insert", hash: 7, addr: addr(1)},
			{do: "insert", hash: 7, addr: addr(2)},
			{do: "useful", hash: 7, addr: addr(1), ok: true},
			{do: "lookup", hash: 7, want: []uint64{addr(1), addr(2)}},
		}},
		{"reinsert is not a duplicate", []op{
			{do: "insert", hash: 7, addr: addr(1)},
			{do: "insert", hash: 7, addr: addr(2)},
			{do: "insert", hash: 7, addr: addr(1)},
			{do: "lookup", hash: 7, want: []uint64{addr(1), addr(2)}},
		}},
		{"erase", []op{
			{do: "insert", hash: 7, addr: addr(1)},
			{do: "insert", hash: 7, addr: addr(2)},
			{do: "erase", hash: 7, addr: addr(2), ok: true},
			{do: "lookup", hash: 7, want: []uint64{addr(1)}},
			{do: "erase", hash: 7, addr: addr(1), ok: true},
			{do: "lookup", hash: 7},
		}},
		{"erase and useful of absent cells", []op{
			{do: "insert", hash: 7, addr: addr(1)},
			{do: "erase", hash: 7, addr: addr(2)},
			{do: "erase", hash: 8, addr: addr(1)},
			{do: "useful", hash: 7, addr: addr(2)},
			{do: "lookup", hash: 7, want: []uint64{addr(1)}},
		}},
		{"flags never leak into addresses", []op{
			{do: "insert", hash: 7, addr: addr(1)},
			{do: "useful", hash: 7, addr: addr(1), ok: true},
			{do: "lookup", hash: 7, want: []uint64{addr(1)}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newIndex(t, 4*bucketBytes)
			for i, o := range tc.ops {
				switch o.do {
				case "insert":
					x.Insert(o.hash, o.addr)
				case "useful":
					if ok := x.MarkUseful(o.hash, o.addr); ok != o.ok {
						t.Fatalf("op %d: MarkUseful = %v, want %v", i, ok, o.ok)
					}
				case "erase":
					if ok := x.Erase(o.hash, o.addr); ok != o.ok {
						t.Fatalf("op %d: Erase = %v, want %v", i, ok, o.ok)
					}
				case "lookup":
					if got := x.Lookup(nil, o.hash); !slices.Equal(got, o.want) {
						t.Fatalf("op %d: Lookup(%d) = %v, want %v", i, o.hash, got, o.want)
					}
				}
			}
			checkAll(t, x)
		})
	}
}

func TestLookupMovesHitsToFront(t *testing.T) {
	x := newIndex(t, bucketBytes)
	for i := range 10 {
		x.insert(uint64(i+1), addr(i), true)
	}
	x.Insert(3, addr(100)) // ahead of the older cell of hash 3, wherever
	x.Lookup(nil, 3)
	got := contents(x, 0)
	want := [][2]uint64{{3, addr(100)}, {3, addr(2)}}
	if !slices.Equal(got[:2], want) {
		t.Fatalf("front after lookup = %v, want %v", got[:2], want)
	}
}

func TestInsertUnalignedPanics(t *testing.T) {
	x := newIndex(t, bucketBytes)
	defer func() {
		if recover() == nil {
			t.Fatal("Insert of an unaligned address did not panic")
		}
	}()
	x.Insert(1, BlockSize+1)
}

// TestEvictionOrder inserts at the front, so that the LRU order is known,
// and checks which cells a full bucket gives up.
func TestEvictionOrder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		useful int // the oldest cells marked useful after the fill
		more   int // front inserts after that
		kept   bool
	}{
		{"plain LRU evicts the oldest", 0, 10, false},
		{"useful cells outlive a bucket's worth of inserts", 10, cellsPerBucket, true},
		{"second chance only", 10, 2 * cellsPerBucket, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newIndex(t, bucketBytes)
			for i := range cellsPerBucket {
				x.insert(uint64(i+1), addr(i), true)
			}
			for i := range tc.useful {
				x.MarkUseful(uint64(i+1), addr(i))
			}
			for i := range tc.more {
				x.insert(uint64(1000+i), addr(1000+i), true)
			}
			for i := range 10 {
				if got := x.Lookup(nil, uint64(i+1)) != nil; got != tc.kept {
					t.Errorf("cell %d kept = %v, want %v", i, got, tc.kept)
				}
			}
			if _, used, _, _, _, ev := x.Stats(); used != cellsPerBucket || ev != uint64(tc.more) {
				t.Errorf("used %d evictions %d, want %d and %d", used, ev, cellsPerBucket, tc.more)
			}
			checkAll(t, x)
		})
	}
}

// TestSecondChanceClearsFlags checks the state right after useful cells
// reach the tail of a full bucket: they move to the front unflagged, and
// the oldest cell that is not useful goes.
func TestSecondChanceClearsFlags(t *testing.T) {
	x := newIndex(t, bucketBytes)
	for i := range cellsPerBucket {
		x.insert(uint64(i+1), addr(i), true)
	}
	x.MarkUseful(2, addr(1))
	x.MarkUseful(1, addr(0))
	for i := range cellsPerBucket - 2 { // push them to the tail
		x.insert(uint64(1000+i), addr(1000+i), true)
	}
	if tail := contents(x, 0)[cellsPerBucket-2:]; tail[0][0] != 1 || tail[1][0] != 2 {
		t.Fatalf("tail = %v, want hashes 1 and 2", tail)
	}
	x.insert(2000, addr(2000), true)
	got := contents(x, 0)
	want := [][2]uint64{
		{2000, addr(2000)},
		{1, addr(0)},
		{2, addr(1)},
		{1253, addr(1253)},
	}
	if !slices.Equal(got[:4], want) {
		t.Fatalf("front = %v, want %v", got[:4], want)
	}
	if x.Lookup(nil, 1000) != nil {
		t.Fatal("the oldest cell that was not useful survived")
	}
}

func TestUsefulSurvivesRandomInserts(t *testing.T) {
	x := newIndex(t, bucketBytes)
	for i := range cellsPerBucket {
		x.Insert(uint64(i), addr(i))
	}
	for i := range 10 {
		x.MarkUseful(uint64(i), addr(i))
	}
	// Each insert shifts a front cell back by one at most.
	for i := range cellsPerBucket - 10 {
		x.Insert(uint64(1000+i), addr(1000+i))
	}
	for i := range 10 {
		if x.Lookup(nil, uint64(i)) == nil {
			t.Errorf("useful cell %d evicted", i)
		}
	}
	checkAll(t, x)
}

func TestBucketOverflow(t *testing.T) {
	const n = 1000
	x := newIndex(t, bucketBytes)
	for i := range n {
		x.Insert(uint64(i+1), addr(i))
		if got := x.Lookup(nil, uint64(i+1)); !slices.Equal(got, []uint64{addr(i)}) {
			t.Fatalf("just inserted %d: Lookup = %v", i, got)
		}
	}
	cells, used, hits, misses, inserts, evictions := x.Stats()
	want := [6]uint64{cellsPerBucket, cellsPerBucket, n, 0, n, n - cellsPerBucket}
	if got := [6]uint64{cells, used, hits, misses, inserts, evictions}; got != want {
		t.Fatalf("Stats = %v, want %v", got, want)
	}
	checkAll(t, x)
}

func TestCollidingHashes(t *testing.T) {
	const nbuckets = 8
	for _, tc := range []struct {
		name   string
		hashes func(i int) uint64
		lookup func(t *testing.T, x *Index)
	}{
		{"distinct hashes, one bucket", func(i int) uint64 { return 5 + uint64(i)*nbuckets },
			func(t *testing.T, x *Index) {
				if got := len(contents(x, 5)); got != cellsPerBucket {
					t.Errorf("bucket 5 holds %d cells", got)
				}
			}},
		{"one hash, many addresses", func(int) uint64 { return 5 },
			func(t *testing.T, x *Index) {
				got := x.Lookup(nil, 5)
				want := make([]uint64, cellsPerBucket)
				for i := range want {
					want[i] = addr(3*cellsPerBucket - 1 - i)
				}
				if !slices.Equal(got, want) {
					t.Errorf("Lookup = %v\nwant the newest %v", got, want)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newIndex(t, nbuckets*bucketBytes)
			for i := range 3 * cellsPerBucket {
				x.Insert(tc.hashes(i), addr(i))
			}
			for bi := range uint64(nbuckets) {
				if bi != 5 && len(contents(x, bi)) != 0 {
					t.Errorf("bucket %d is not empty", bi)
				}
			}
			if x.Lookup(nil, 6) != nil {
				t.Error("hit in an empty bucket")
			}
			tc.lookup(t, x)
			checkAll(t, x)
		})
	}
}

func TestStripes(t *testing.T) {
	for _, tc := range []struct{ size, stripes uint64 }{
		{bucketBytes, 1},
		{3 * bucketBytes, 2},
		{4 << 20, maxStripes},
	} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			if got := uint64(len(newIndex(t, tc.size).stripes)); got != tc.stripes {
				t.Errorf("%d stripes, want %d", got, tc.stripes)
			}
		})
	}
}

func TestResized(t *testing.T) {
	for _, size := range []uint64{16 * bucketBytes, 64 * bucketBytes} {
		t.Run(fmt.Sprint(size/bucketBytes), func(t *testing.T) {
			x := newIndex(t, 32*bucketBytes)
			for i := range 1000 {
				x.Insert(spread(i), addr(i))
			}
			x.MarkUseful(spread(5), addr(5))
			y, err := x.resized(size)
			if err != nil {
				t.Fatal(err)
			}
			checkAll(t, y)
			for i := range 1000 {
				if got := y.Lookup(nil, spread(i)); !slices.Equal(got, []uint64{addr(i)}) {
					t.Fatalf("cell %d: Lookup = %v", i, got)
				}
			}
			b := y.bucket(spread(5) % y.nbuckets)
			if _, _, i := b.scan(spread(5), addr(5)); i < 0 || b.word(i)&flagUseful == 0 {
				t.Error("useful flag lost")
			}
		})
	}
}

// Lookup runs once per block hashed: reusing the caller's slice, it must
// make no garbage, which would otherwise grow the heap by the index's size
// before the collector runs.
func TestLookupAppendsWithoutAllocating(t *testing.T) {
	x := newIndex(t, bucketBytes)
	x.Insert(7, addr(1))
	x.Insert(7, addr(2))
	prefix := []uint64{99}
	if got, want := x.Lookup(prefix, 7), []uint64{99, addr(2), addr(1)}; !slices.Equal(got, want) {
		t.Fatalf("Lookup(%v, 7) = %v, want %v", prefix, got, want)
	}
	if got := x.Lookup(prefix, 8); !slices.Equal(got, prefix) {
		t.Fatalf("Lookup of a missing hash = %v, want the prefix %v", got, prefix)
	}
	buf := make([]uint64, 0, cellsPerBucket)
	if n := testing.AllocsPerRun(100, func() { buf = x.Lookup(buf[:0], 7) }); n != 0 {
		t.Fatalf("Lookup with room in dst made %v allocations, want 0", n)
	}
}
