// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"slices"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
)

// A cold extent often holds runs of blocks that another extent of the
// pool holds too: the dedup stage shares a match into a compressed extent
// only when it covers enough of it to be worth the reads
// (minSourceSharePercent), and btrfs frees nothing of an extent while any
// part of it is referenced. The cold pass, which rewrites the extent
// anyway, leaves such runs out of the extent's copy and moves them to the
// other extent, through every reference covering them: on bench/dedup's
// corpus a tenth of the pool's data is such runs. The price is the read
// cost the dedup stage avoids, paid on cold data only.

// extentRange is a range [lo, hi) of an extent's uncompressed data.
type extentRange struct{ lo, hi uint64 }

// elsewhereRun is a run of an extent's blocks another extent holds, at src.
type elsewhereRun struct {
	extentRange
	src blockSource
}

// runsElsewhere finds the runs of e's referenced blocks, of at least
// coldMinElsewhereRun blocks, that the index finds in another extent of
// the pool, verified byte for byte. data holds spans' bytes, packed as
// readSpans reads them; refs are e's references.
func (r *jobRun) runsElsewhere(e btrfs.Extent, refs []extentRef, spans []coldSpan, data []byte) ([]elsewhereRun, error) {
	if r.dedup == nil {
		return nil, nil
	}
	self := diskSpan{e.DiskBytenr, e.DiskBytenr + e.DiskNumBytes}
	var runs []elsewhereRun
	for _, sp := range spans {
		for x := sp.lo; x+blockSize <= sp.hi; { // references start on a block
			at := sp.at + x - sp.lo
			src, n, err := r.dedup.runElsewhere(self, refs, data[at:sp.at+sp.hi-sp.lo])
			if err != nil {
				return nil, err
			}
			if n < coldMinElsewhereRun*blockSize {
				x += blockSize
				continue
			}
			runs = append(runs, elsewhereRun{extentRange{x, x + n}, src})
			x += n
		}
	}
	return runs, nil
}

// moveRuns deduplicates each run from its source into every reference
// covering part of it, and reports whether all of them moved whole. A
// refusal (the source changed or went since it was compared, say) leaves
// the rest of that run where it was: the caller then keeps the extent.
func (r *jobRun) moveRuns(runs []elsewhereRun, refs []extentRef) bool {
	whole := true
	for _, run := range runs {
		f, err := r.dedup.source(run.src.file)
		if err != nil || f == nil {
			r.p.log.Debug("cold run's source is gone", "file", r.p.Volumes.Path(run.src.file), "err", err)
			return false
		}
		for _, ref := range refs {
			lo, hi := max(run.lo, ref.extentOffset), min(run.hi, ref.extentOffset+ref.length)
			if lo >= hi {
				continue
			}
			dest := btrfs.DedupeDest{File: ref.file, Offset: ref.offset + lo - ref.extentOffset}
			done, err := btrfs.Dedupe(f, run.src.offset+lo-run.lo, hi-lo, []btrfs.DedupeDest{dest})
			if err != nil {
				r.p.log.Debug("cold run not moved", "into", ref.file.Name(), "at", dest.Offset,
					"from", r.p.Volumes.Path(run.src.file), "err", err)
				return false
			}
			whole = whole && done[0] == hi-lo
		}
	}
	return whole
}

// runRanges are the ranges of runs.
func runRanges(runs []elsewhereRun) []extentRange {
	out := make([]extentRange, len(runs))
	for i, run := range runs {
		out[i] = run.extentRange
	}
	return out
}

// runElsewhere finds a run of whole blocks at the start of data that a
// committed extent outside skip (the extent data is from, which refs
// reference) holds: the first the index leads to, verified byte for byte
// as far as it goes. It returns the run's source and length, 0 if there
// is none. Zero blocks are never matched: they become holes.
func (d *deduper) runElsewhere(skip diskSpan, refs []extentRef, data []byte) (blockSource, uint64, error) {
	if len(data) < blockSize || isZero(data[:blockSize]) {
		return blockSource{}, 0, nil
	}
	h := dedupindex.HashBlock(data[:blockSize])
	d.addrBuf = d.idx.Lookup(d.addrBuf[:0], h)
	if len(d.addrBuf) == 0 {
		return blockSource{}, 0, nil
	}
	// An uncompressed block's address lies inside its extent.
	inSkip := func(addr uint64) bool {
		base, _ := dedupindex.SplitAddr(addr)
		return skip.start <= base && base < skip.end
	}
	// A stale entry may lead to a range now moved into the very extent
	// data is from: the run stops where that begins. No image is being
	// written here, so the run's own references are kept apart by that
	// alone.
	clip := func(src blockSource, n int) int { return int(outside(src, uint64(n), refs)) }
	src, _, n, err := d.indexedRun(d.addrBuf, h, dedupDest{}, 0, data, inSkip, clip)
	return src, uint64(n), err
}

// outside returns how many of the n bytes from src lie before any of
// refs, the references to the extent the run is to leave, in the same
// file.
func outside(src blockSource, n uint64, refs []extentRef) uint64 {
	for _, ref := range refs {
		if ref.name != src.file || ref.offset+ref.length <= src.offset || src.offset+n <= ref.offset {
			continue
		}
		n = max(ref.offset, src.offset) - src.offset
	}
	return n
}

// refsWithout cuts the ranges moved (sorted, apart) out of refs.
func refsWithout(refs []extentRef, moved []extentRange) []extentRef {
	if len(moved) == 0 {
		return refs
	}
	var out []extentRef
	for _, ref := range refs {
		pos, end := ref.extentOffset, ref.extentOffset+ref.length
		for _, m := range moved {
			if m.hi <= pos || m.lo >= end {
				continue
			}
			if m.lo > pos {
				out = append(out, ref.piece(pos, m.lo))
			}
			pos = max(pos, m.hi)
		}
		if pos < end {
			out = append(out, ref.piece(pos, end))
		}
	}
	return out
}

// piece is the part of ref covering [lo, hi) of its extent.
func (ref extentRef) piece(lo, hi uint64) extentRef {
	p := ref
	p.offset += lo - ref.extentOffset
	p.extentOffset, p.length = lo, hi-lo
	return p
}

// repack returns the bytes of spans (a subset of what from covers, both
// packed as readSpans packs them) taken from data, laid out as from.
func repack(from []coldSpan, data []byte, spans []coldSpan) []byte {
	last := spans[len(spans)-1]
	out := make([]byte, last.at+last.hi-last.lo)
	for _, sp := range spans {
		i := slices.IndexFunc(from, func(f coldSpan) bool { return f.lo <= sp.lo && sp.hi <= f.hi })
		src := from[i] // spans lie within from's
		copy(out[sp.at:sp.at+sp.hi-sp.lo], data[src.at+sp.lo-src.lo:])
	}
	return out
}
