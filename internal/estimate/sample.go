// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import (
	"bytes"
	"cmp"
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// unitBytes is the piece btrfs compresses as one extent, and so the unit
// sampled: what one piece compresses to depends on its neighbours.
const unitBytes = btrfs.MaxCompressedExtent

// worthRatio is the optimizer's bar for rewriting an extent that holds
// neither zeros nor duplicates: compressed, it must take at most this
// share of its size (the default min_compress_saving, 12.5 %).
const worthRatio = 0.875

// unit is a piece of at most unitBytes of an extent's live bytes.
type unit struct {
	ext        int
	eo, length uint64
}

// units cuts the live ranges of the extents a full optimization rewrites
// into pieces, as it compresses them.
func units(exts []extent) []unit {
	var out []unit
	for i := range exts {
		e := &exts[i]
		if e.class != classDedup && e.class != classCompress {
			continue
		}
		for _, s := range e.live {
			for off := s.offset; off < s.offset+s.length; off += unitBytes {
				out = append(out, unit{ext: i, eo: off, length: min(unitBytes, s.offset+s.length-off)})
			}
		}
	}
	return out
}

// choose picks n of all at random without replacement (a partial
// Fisher-Yates shuffle; all is reordered) and returns them in disk order,
// which is also the visiting order of their extents.
func choose(all []unit, n int, rng *rand.Rand) []unit {
	n = min(n, len(all))
	for i := range n {
		j := i + rng.IntN(len(all)-i)
		all[i], all[j] = all[j], all[i]
	}
	picked := slices.Clone(all[:n])
	slices.SortFunc(picked, func(a, b unit) int {
		return cmp.Or(cmp.Compare(a.ext, b.ext), cmp.Compare(a.eo, b.eo))
	})
	return picked
}

// unitResult is what reading one sampled unit found, in bytes.
type unitResult struct {
	vm  int
	raw uint64 // the unit's bytes
	// full is the unit's size on disk after compression alone.
	full uint64
	// zero and dup are the bytes of zero blocks and of blocks found
	// earlier in the pool; keptRaw the rest, and kept its size on disk
	// after the optimization.
	zero, dup, keptRaw, kept uint64
	// mismatched counts blocks whose stored checksum is not that of the
	// bytes read.
	mismatched int
}

// occurrence is where a sampled unit's block key occurs in the pool: the
// first block of an extent a job rewrites, in visiting order, and whether
// an extent left in place holds it.
type occurrence struct {
	first  uint64
	source bool
}

// sampled is the sample: its units, their blocks' keys, and the other
// occurrences of those keys.
type sampled struct {
	units []unit
	keys  [][]uint64
	have  [][]bool
	occ   map[uint64]*occurrence
}

// blockOrder orders blocks as a full optimization visits them.
func blockOrder(ext int, eo uint64) uint64 { return uint64(ext)<<20 | eo/blockSize }

// measurer compresses sampled units as the optimizer would.
type measurer struct {
	l     *layout
	exts  []extent
	h     hasher
	s     *sampled
	enc   *btrfs.ZstdEncoder
	read  atomic.Uint64
	zeros []byte
}

// measureAll reads and measures every sampled unit on every CPU; tick is
// told the bytes read so far.
func (m *measurer) measureAll(ctx context.Context, tick func(uint64)) ([]unitResult, error) {
	out := make([]unitResult, len(m.s.units))
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf, kept := make([]byte, unitBytes), make([]byte, 0, unitBytes)
			for i := int(next.Add(1) - 1); i < len(out) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				r, err := m.measure(i, buf, kept)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				out[i] = r
				tick(m.read.Add(r.raw))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, ctx.Err()
}

// measure reads unit i and works out what it becomes.
func (m *measurer) measure(i int, buf, kept []byte) (unitResult, error) {
	u := m.s.units[i]
	e := &m.exts[u.ext]
	data := buf[:u.length]
	if err := readExtent(m.l, e, u.eo, data); err != nil {
		return unitResult{}, err
	}
	r := unitResult{vm: e.vm, raw: u.length}
	kept = kept[:0]
	for b := uint64(0); b < u.length/blockSize; b++ {
		blk := data[b*blockSize : (b+1)*blockSize]
		key, have := m.s.keys[i][b], m.s.have[i][b]
		if k, ok := m.h.compute(blk); ok && have && k != key {
			r.mismatched++
			have = false
		}
		if e.class == classDedup {
			if bytes.Equal(blk, m.zeros) {
				r.zero += blockSize
				continue
			}
			if have && m.s.isDup(key, blockOrder(u.ext, u.eo+b*blockSize)) {
				r.dup += blockSize
				continue
			}
		}
		kept = append(kept, blk...)
	}
	r.full = m.onDisk(data, worthRatio)
	r.keptRaw = uint64(len(kept))
	r.kept = r.full
	if r.zero+r.dup > 0 {
		// The rest of a taken-apart extent is rewritten, compressed where
		// that saves a sector.
		r.kept = m.onDisk(kept, 1)
	}
	return r, nil
}

// isDup reports whether a block with this key at this order is found
// earlier in the pool or in an extent left in place.
func (s *sampled) isDup(key, order uint64) bool {
	o := s.occ[key]
	return o != nil && (o.source || o.first < order)
}

// onDisk is the space data takes written as one extent: its zstd frame
// rounded up to sectors when that saves a sector and takes at most
// ratio of its size, else data as it is.
func (m *measurer) onDisk(data []byte, ratio float64) uint64 {
	if len(data) == 0 {
		return 0
	}
	frame := m.enc.Encode(make([]byte, 0, len(data)), data)
	n := uint64(len(data))
	if btrfs.Saves(frame, data) && float64(len(frame)) <= ratio*float64(n) {
		return uint64(btrfs.StoredBytes(len(frame)))
	}
	return n
}

// collectKeys is the first sweep: the keys of the sampled units' blocks.
func (m *measurer) collectKeys(ctx context.Context) (uint64, error) {
	s := m.s
	s.keys, s.have = make([][]uint64, len(s.units)), make([][]bool, len(s.units))
	ts := make([]target, len(s.units))
	for i, u := range s.units {
		s.keys[i], s.have[i] = make([]uint64, u.length/blockSize), make([]bool, u.length/blockSize)
		ts[i] = target{addr: m.exts[u.ext].bytenr + u.eo, length: u.length, ext: u.ext, eo: u.eo, id: i}
	}
	slices.SortFunc(ts, func(a, b target) int { return cmp.Compare(a.addr, b.addr) })
	ts = dropOverlaps(ts)
	return sweep(ctx, m.l.root, m.h, ts, func(t *target, off, key uint64) {
		s.keys[t.id][off/blockSize], s.have[t.id][off/blockSize] = key, true
	})
}

// dropOverlaps removes targets overlapping an earlier one; units of one
// extent never overlap, so this guards against a corrupt listing only.
func dropOverlaps(ts []target) []target {
	out := ts[:0]
	for _, t := range ts {
		if k := len(out) - 1; k >= 0 && t.addr < out[k].addr+out[k].length {
			continue
		}
		out = append(out, t)
	}
	return out
}
