// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Sizing.
const (
	// defaultPerTB is bees' recommendation: one cell per 32 blocks still
	// finds most duplicate runs of 128 KiB and more, since one matching
	// block is enough and the match is extended over its neighbours.
	defaultPerTB = 128 << 20
	// fullSize is the size up to which an index has room for every block
	// of its pool's data twice over (16-byte cells, one per 4 KiB block,
	// and as many free), so that a small pool's index misses nothing; it
	// is reached at 4 GiB of data. Past it, defaultPerTB takes over once
	// it asks for more.
	fullSize = 32 << 20
	// bytesPerFull is the data one byte of a fully covering index holds.
	bytesPerFull = BlockSize / (2 * cellBytes)
	// minSize is an empty pool's index: a few buckets.
	minSize = 64 * bucketBytes
	tb      = 1_000_000_000_000
	// maxStripes is far more locks than cores, so workers rarely wait on
	// each other, at 64 bytes each.
	maxStripes = 1024
)

// DefaultSize returns the default index size for a pool holding
// dataBytes of data, in whole buckets: room for every block twice over up
// to 32 MiB (4 GiB of data), then 128 MiB per TB (10^12 bytes) once that
// is more, and never below 256 KiB. An index sized by the data it indexes
// stays a small part of a small pool.
func DefaultSize(dataBytes uint64) uint64 {
	hi, lo := bits.Mul64(dataBytes, defaultPerTB)
	q, r := bits.Div64(hi, lo, tb)
	if r != 0 {
		q++
	}
	q = max(q, min((dataBytes+bytesPerFull-1)/bytesPerFull, fullSize))
	q = (q + bucketBytes - 1) / bucketBytes * bucketBytes
	return max(q, minSize)
}

// Index is the table. Its methods are safe for concurrent use.
type Index struct {
	table      []byte // nbuckets buckets, exactly the configured size
	nbuckets   uint64
	stripes    []stripe
	stripeMask uint64
	dirty      []atomic.Uint64 // one bit per bucket
	flushMu    sync.Mutex      // one WriteDirty at a time
}

// stripe is the lock of its buckets and their counters, padded to a cache
// line so that stripes used by different cores do not share one.
type stripe struct {
	mu                                     sync.Mutex
	used, hits, misses, inserts, evictions atomic.Uint64
	_                                      [16]byte
}

// New returns an empty index of size bytes, a positive multiple of 4 KiB.
func New(size uint64) (*Index, error) {
	if size == 0 || size%bucketBytes != 0 || size > math.MaxInt {
		return nil, fmt.Errorf("dedup index size %d is not a positive multiple of %d", size, bucketBytes)
	}
	nbuckets := size / bucketBytes
	nstripes := uint64(maxStripes)
	for nstripes > nbuckets {
		nstripes /= 2
	}
	return &Index{
		table:      make([]byte, size),
		nbuckets:   nbuckets,
		stripes:    make([]stripe, nstripes),
		stripeMask: nstripes - 1,
		dirty:      make([]atomic.Uint64, (nbuckets+63)/64),
	}, nil
}

// Size returns the size of the table in bytes.
func (x *Index) Size() uint64 { return uint64(len(x.table)) }

func (x *Index) bucket(bi uint64) bucket {
	return bucket(x.table[bi*bucketBytes : (bi+1)*bucketBytes])
}

// lock locks the stripe of hash's bucket and returns them.
func (x *Index) lock(hash uint64) (uint64, bucket, *stripe) {
	bi := hash % x.nbuckets
	s := &x.stripes[bi&x.stripeMask]
	s.mu.Lock()
	return bi, x.bucket(bi), s
}

// key returns the hash as stored: 0 marks an empty cell, so hash 0 is
// stored as 1. Blocks hashing to 0 and 1 then collide, which costs what
// any collision costs: one dedupe the kernel refuses.
func key(hash uint64) uint64 { return max(hash, 1) }

// markDirty sets bi's dirty bit. It reads first: most bits are already set
// between flushes, and a read leaves the cache line shared between cores
// where a read-modify-write would take it away from the others.
func (x *Index) markDirty(bi uint64) {
	w, bit := &x.dirty[bi/64], uint64(1)<<(bi%64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// Lookup appends to dst every address stored for hash, newest first (a
// cell that produced a dedup is moved ahead), moves them to the front of
// their bucket, and returns the extended slice; on a miss it returns dst
// unchanged. Called once per block hashed, it allocates nothing when dst
// has room: a caller reusing dst[:0] makes no garbage.
func (x *Index) Lookup(dst []uint64, hash uint64) []uint64 {
	hash = key(hash)
	bi, b, s := x.lock(hash)
	defer s.mu.Unlock()
	k, moved := b.raise(hash)
	if k == 0 {
		s.misses.Add(1)
		return dst
	}
	s.hits.Add(1)
	if moved {
		x.markDirty(bi)
	}
	for i := range k {
		dst = append(dst, b.word(i)&^flagMask)
	}
	return dst
}

// Insert stores addr for hash at a random position of its bucket's LRU
// order, so that a new cell survives a random number of later inserts
// (bees' model), but ahead of older cells of the same hash. A full bucket
// evicts its tail, sparing useful cells once. Inserting a stored pair
// moves it to the front. addr must be BlockSize-aligned; anything else is a
// caller bug and panics.
func (x *Index) Insert(hash, addr uint64) {
	if addr&flagMask != 0 {
		panic(fmt.Sprintf("dedupindex: Insert of unaligned address %#x", addr))
	}
	x.insert(hash, addr, false)
}

// insert stores a cell with word's flags, at the front or at a random
// position.
func (x *Index) insert(hash, word uint64, front bool) {
	hash = key(hash)
	bi, b, s := x.lock(hash)
	defer s.mu.Unlock()
	n, first, at := b.scan(hash, word&^flagMask)
	if at >= 0 {
		if at != 0 {
			b.move(at, 0)
			x.markDirty(bi)
		}
		return
	}
	s.inserts.Add(1)
	if n == cellsPerBucket {
		n = b.evict()
		_, first, _ = b.scan(hash, word&^flagMask) // the eviction moved cells
		s.evictions.Add(1)
	} else {
		s.used.Add(1)
	}
	pos := 0
	if !front {
		pos = rand.IntN(n + 1)
	}
	if first >= 0 && first < pos {
		pos = first
	}
	b.insertAt(pos, n, hash, word)
	x.markDirty(bi)
}

// MarkUseful flags the cell of hash and addr as having produced a dedup and
// moves it to the front. It reports whether the cell was stored.
func (x *Index) MarkUseful(hash, addr uint64) bool {
	hash = key(hash)
	bi, b, s := x.lock(hash)
	defer s.mu.Unlock()
	_, _, i := b.scan(hash, addr)
	if i < 0 {
		return false
	}
	b.set(i, hash, b.word(i)|flagUseful)
	b.move(i, 0)
	x.markDirty(bi)
	return true
}

// Erase removes the cell of hash and addr, for an entry found stale by a
// failed dedupe. It reports whether the cell was stored.
func (x *Index) Erase(hash, addr uint64) bool {
	hash = key(hash)
	bi, b, s := x.lock(hash)
	defer s.mu.Unlock()
	n, _, i := b.scan(hash, addr)
	if i < 0 {
		return false
	}
	b.remove(i, n)
	s.used.Add(^uint64(0))
	x.markDirty(bi)
	return true
}

// Stats returns the number of cells, how many are stored, and the counts
// of lookups that hit and missed, of cells inserted and of cells evicted.
func (x *Index) Stats() (cells, used, hits, misses, inserts, evictions uint64) {
	cells = x.nbuckets * cellsPerBucket
	for i := range x.stripes {
		s := &x.stripes[i]
		used += s.used.Load()
		hits += s.hits.Load()
		misses += s.misses.Load()
		inserts += s.inserts.Load()
		evictions += s.evictions.Load()
	}
	return cells, used, hits, misses, inserts, evictions
}

// resized returns an index of size holding x's cells and flags, each
// bucket's front cells inserted last so they stay in front, and its
// counters at zero. It copies cells rather than rehashing blocks, so
// changing the configured size keeps what the index learned.
func (x *Index) resized(size uint64) (*Index, error) {
	y, err := New(size)
	if err != nil {
		return nil, err
	}
	for bi := range x.nbuckets {
		s := &x.stripes[bi&x.stripeMask]
		s.mu.Lock()
		b := x.bucket(bi)
		for i := b.used() - 1; i >= 0; i-- {
			y.insert(b.hash(i), b.word(i), true)
		}
		s.mu.Unlock()
	}
	for i := range y.stripes {
		y.stripes[i].inserts.Store(0)
		y.stripes[i].evictions.Store(0)
	}
	return y, nil
}
