// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import (
	"bytes"
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
)

// entry is a block whose key the content sample kept: its key, and its
// order (blockOrder) with sourceBit set when its extent is left in place.
type entry struct{ key, order uint64 }

// sourceBit marks an entry's order; orders use 44 bits.
const sourceBit = 1 << 63

func (e entry) source() bool  { return e.order&sourceBit != 0 }
func (e entry) block() uint64 { return e.order &^ sourceBit }
func (e entry) extent() int   { return int(e.block() >> 20) }

// dupCounts are the dedup figures of one VM, in blocks.
type dupCounts struct {
	zero uint64 // exact
	// dup estimates the blocks found earlier in the pool; dupVar is the
	// variance of that estimate from the content sample.
	dup, dupVar float64
}

// dedupScan is the second sweep, over every block of the extents a full
// optimization rewrites or finds duplicates in.
type dedupScan struct {
	exts []extent
	h    hasher
	seed uint64
	// rate is the share of distinct contents whose blocks are kept in
	// entries: every block whose mixed key is below threshold.
	rate      float64
	threshold uint64
	entries   []entry
	s         *sampled
	counts    []dupCounts
	blocks    uint64
}

func newDedupScan(exts []extent, h hasher, s *sampled, vms int, seed uint64) *dedupScan {
	return &dedupScan{exts: exts, h: h, seed: seed, s: s, counts: make([]dupCounts, vms), rate: 1, threshold: math.MaxUint64}
}

// setRate sets the content sample's rate so that about maxEntries of the
// blocks counted by targets are kept.
func (d *dedupScan) setRate(maxEntries int) {
	if d.blocks > uint64(maxEntries) {
		d.rate = float64(maxEntries) / float64(d.blocks)
		d.threshold = uint64(d.rate * math.MaxUint64)
	}
	d.entries = make([]entry, 0, min(uint64(maxEntries), d.blocks)+d.blocks/64)
}

// targets lists the live blocks of the extents that take part, by address.
func (d *dedupScan) targets() []target {
	var ts []target
	for i := range d.exts {
		e := &d.exts[i]
		if e.class != classDedup && e.class != classSource {
			continue
		}
		for _, sp := range e.live {
			ts = append(ts, target{addr: e.bytenr + sp.offset, length: sp.length, ext: i, eo: sp.offset})
			d.blocks += sp.length / blockSize
		}
	}
	slices.SortFunc(ts, func(a, b target) int { return cmp.Compare(a.addr, b.addr) })
	return dropOverlaps(ts)
}

// visit takes one block's key.
func (d *dedupScan) visit(t *target, off, key uint64) {
	e := &d.exts[t.ext]
	order := blockOrder(t.ext, t.eo+off)
	source := e.class == classSource
	if o := d.s.occ[key]; o != nil {
		o.source = o.source || source
		if !source {
			o.first = min(o.first, order)
		}
	}
	if d.h.known && key == d.h.zero {
		if !source {
			d.counts[e.vm].zero++
		}
		return // zero blocks become holes: no copy is kept
	}
	if mix(key, d.seed) <= d.threshold {
		if source {
			order |= sourceBit
		}
		d.entries = append(d.entries, entry{key: key, order: order})
	}
}

// pair is a block counted as a duplicate and the block it would share.
type pair struct{ dup, kept entry }

// tally counts the duplicates among the entries, scaled by the sampling
// rate (a Horvitz-Thompson estimate: a content's blocks are kept all or
// none, with probability rate), and picks up to maxPairs duplicate pairs
// at random to verify.
func (d *dedupScan) tally(rng *rand.Rand, maxPairs int) []pair {
	slices.SortFunc(d.entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.block(), b.block()))
	})
	var pairs []pair
	seen := 0
	perVM := make([]float64, len(d.counts))
	for lo := 0; lo < len(d.entries); {
		hi := lo + 1
		for hi < len(d.entries) && d.entries[hi].key == d.entries[lo].key {
			hi++
		}
		group := d.entries[lo:hi]
		lo = hi
		keeper := slices.IndexFunc(group, entry.source)
		if keeper < 0 {
			keeper = 0
		}
		clear(perVM)
		for i, e := range group {
			if e.source() || i == keeper {
				continue
			}
			perVM[d.exts[e.extent()].vm]++
			// Reservoir sampling keeps each pair with equal chance.
			if seen++; len(pairs) < maxPairs {
				pairs = append(pairs, pair{e, group[keeper]})
			} else if j := rng.IntN(seen); j < maxPairs {
				pairs[j] = pair{e, group[keeper]}
			}
		}
		for vm, n := range perVM {
			d.counts[vm].dup += n / d.rate
			d.counts[vm].dupVar += n * n * (1 - d.rate) / (d.rate * d.rate)
		}
	}
	return pairs
}

// verify reads each pair's two blocks and returns the share that are
// equal: keys are short checksums, and unequal blocks can share one.
func verify(ctx context.Context, l *layout, exts []extent, pairs []pair, read *uint64) (float64, int, error) {
	if len(pairs) == 0 {
		return 1, 0, nil
	}
	a, b := make([]byte, blockSize), make([]byte, blockSize)
	equal := 0
	for _, p := range pairs {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		if err := readBlock(l, exts, p.dup.block(), a); err != nil {
			return 0, 0, err
		}
		if err := readBlock(l, exts, p.kept.block(), b); err != nil {
			return 0, 0, err
		}
		*read += 2 * blockSize
		if bytes.Equal(a, b) {
			equal++
		}
	}
	return float64(equal) / float64(len(pairs)), len(pairs), nil
}

func readBlock(l *layout, exts []extent, order uint64, buf []byte) error {
	e := &exts[order>>20]
	return readExtent(l, e, (order&(1<<20-1))*blockSize, buf)
}
