// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"encoding/binary"
	"fmt"
)

// Geometry of the table (the sizes of bees' hash table).
const (
	cellBytes      = 16
	bucketBytes    = 4096
	cellsPerBucket = bucketBytes / cellBytes
	wordsAt        = cellsPerBucket * 8 // offset of a bucket's address words
)

// Flags kept in the low bits of a stored address, which are always zero in
// a BlockSize-aligned address.
const (
	flagUseful = 1 << 0 // the address has produced a dedup
	flagMask   = BlockSize - 1
	knownFlags = flagUseful
)

// bucket is one bucket's bytes inside the table: its 256 hashes, then its
// 256 address words (address | flags), all little-endian; cell i is hash i
// and word i. Searches are bound by memory reads, and this way they read
// 2 KiB of hashes rather than 4 KiB of cells. Stored cells are packed at
// the front, most recently used first. An empty cell is all zero; a stored
// hash is never zero (see key).
type bucket []byte

func (b bucket) hash(i int) uint64 { return binary.LittleEndian.Uint64(b[i*8:]) }
func (b bucket) word(i int) uint64 { return binary.LittleEndian.Uint64(b[wordsAt+i*8:]) }

func (b bucket) set(i int, hash, word uint64) {
	binary.LittleEndian.PutUint64(b[i*8:], hash)
	binary.LittleEndian.PutUint64(b[wordsAt+i*8:], word)
}

// copyCells copies n cells from index src to index dst, overlapping or not.
func (b bucket) copyCells(dst, src, n int) {
	copy(b[dst*8:(dst+n)*8], b[src*8:(src+n)*8])
	copy(b[wordsAt+dst*8:wordsAt+(dst+n)*8], b[wordsAt+src*8:wordsAt+(src+n)*8])
}

// next returns the index of the first cell from i on that holds hash or
// is empty, or cellsPerBucket. It is the inner loop of every search: it
// reads in order, which the CPU prefetches well (a binary search for the
// end would wait on a cache miss per step), and without bounds checks.
func (b bucket) next(hash uint64, i int) int {
	hashes := (*[wordsAt]byte)(b[:wordsAt])
	for j := uint(i); j < cellsPerBucket; j++ {
		if h := binary.LittleEndian.Uint64(hashes[j*8:]); h == hash || h == 0 {
			return int(j)
		}
	}
	return cellsPerBucket
}

// used returns the number of stored cells.
func (b bucket) used() int { return b.next(0, 0) }

// stored reports whether cell i is a stored cell.
func (b bucket) stored(i int) bool { return i < cellsPerBucket && b.hash(i) != 0 }

// scan returns, in one pass, the number of stored cells, the index of the
// first cell holding hash and that of the cell holding hash and addr, -1
// for none. hash is not 0.
func (b bucket) scan(hash, addr uint64) (n, first, at int) {
	first, at = -1, -1
	i := b.next(hash, 0)
	for ; b.stored(i); i = b.next(hash, i+1) {
		if first < 0 {
			first = i
		}
		if b.word(i)&^flagMask == addr {
			at = i
		}
	}
	return i, first, at
}

// move moves cell i to position j <= i, shifting cells j..i-1 back by one.
func (b bucket) move(i, j int) {
	hash, word := b.hash(i), b.word(i)
	b.copyCells(j+1, j, i-j)
	b.set(j, hash, word)
}

// raise moves the cells holding hash to the front, keeping their order,
// and returns how many there are and whether anything moved. hash is not 0.
func (b bucket) raise(hash uint64) (k int, moved bool) {
	for i := b.next(hash, 0); b.stored(i); i = b.next(hash, i+1) {
		if i != k {
			b.move(i, k)
			moved = true
		}
		k++
	}
	return k, moved
}

// insertAt stores a cell at pos among n stored cells (n < cellsPerBucket),
// shifting the cells from pos back by one.
func (b bucket) insertAt(pos, n int, hash, word uint64) {
	b.copyCells(pos+1, pos, n-pos)
	b.set(pos, hash, word)
}

// remove deletes cell i of n stored cells, closing the gap.
func (b bucket) remove(i, n int) {
	b.copyCells(i, i+1, n-i-1)
	b.set(n-1, 0, 0)
}

// evict frees the tail of a full bucket. Useful cells at the tail get a
// second chance: they move to the front, in order, with their flag
// cleared, so a cell keeps its place only while it goes on producing
// dedups, and the last cell that is not useful goes. If every cell was
// useful, all flags are cleared and the tail goes. Returns the new number
// of stored cells.
func (b bucket) evict() int {
	v := cellsPerBucket - 1
	for v >= 0 && b.word(v)&flagUseful != 0 {
		v--
	}
	k := cellsPerBucket - 1 - v
	var hashes, words [cellsPerBucket]uint64
	for j := range k {
		hashes[j], words[j] = b.hash(v+1+j), b.word(v+1+j)&^flagUseful
	}
	b.copyCells(k, 0, v+1)
	for j := range k {
		b.set(j, hashes[j], words[j])
	}
	b.set(cellsPerBucket-1, 0, 0)
	return cellsPerBucket - 1
}

// check verifies that a bucket read from outside holds only what this
// package stores in bucket bi of nbuckets, and returns its stored cells.
func (b bucket) check(bi, nbuckets uint64) (int, error) {
	n := b.used()
	for i := range cellsPerBucket {
		hash, word := b.hash(i), b.word(i)
		switch {
		case i >= n && (hash != 0 || word != 0):
			return 0, fmt.Errorf("cell %d stored after an empty cell", i)
		case i >= n:
		case word&flagMask&^knownFlags != 0:
			return 0, fmt.Errorf("cell %d has unknown flags %#x", i, word&flagMask)
		case hash%nbuckets != bi:
			return 0, fmt.Errorf("cell %d belongs in bucket %d", i, hash%nbuckets)
		}
	}
	return n, nil
}
