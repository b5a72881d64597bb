// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
)

// minLocalRun is the shortest run shared within the job's own new data.
// Its source is rewritten compressed, in 128 KiB units, before the run is
// deduplicated, and where the run falls in those units is not known yet:
// the share of a unit asked of other sources is asked of it.
const minLocalRun = btrfs.MaxCompressedExtent * minSourceSharePercent / 100

// readableRuns returns the parts of r worth sharing for reads, in order:
// r less the ranges of its source that are short pieces of compressed
// extents. Only the first part keeps r's index entry, which names r's
// first block.
func (d *deduper) readableRuns(r run) ([]run, error) {
	if r.length == 0 {
		return nil, nil
	}
	if !r.fromIndex {
		if r.length < minLocalRun {
			return nil, nil
		}
		return []run{r}, nil
	}
	f, err := d.source(r.src.file)
	if err != nil || f == nil {
		return nil, err
	}
	lo, hi := r.src.offset, r.src.offset+uint64(r.length)
	// A compressed item holds at most MaxCompressedExtent bytes, so one
	// covering lo starts less than that before it.
	items, err := btrfs.ExtentsStartingIn(f, lo-min(lo, btrfs.MaxCompressedExtent-1), hi-1)
	if err != nil {
		return nil, err
	}
	var parts []run
	from := lo
	for _, it := range items {
		s, e := max(it.Offset, lo), min(it.Offset+it.Length, hi)
		if e <= s || it.Compression == btrfs.CompressNone || it.Type != btrfs.ExtentRegular ||
			(e-s)*100 >= minSourceSharePercent*it.RAMBytes {
			continue
		}
		parts = appendPart(parts, r, from, s)
		from = e
	}
	return appendPart(parts, r, from, hi), nil
}

// appendPart appends the part of r whose source lies in [from, to).
func appendPart(parts []run, r run, from, to uint64) []run {
	if to <= from {
		return parts
	}
	p := r
	p.src.offset = from
	p.offset = r.offset + (from - r.src.offset)
	p.length = int(to - from)
	p.fromIndex = r.fromIndex && from == r.src.offset
	return append(parts, p)
}

// sortRun sorts the blocks of run r, found from the block at the start of
// data (hash h, at offset eo into piece i's extent), into the parts of r to
// share and the rest, and returns how many bytes it sorted: the run, or
// the first block when there is none.
func (d *deduper) sortRun(i int, eo, h uint64, data []byte, r run, parts []run) int {
	pc := &d.pieces[i]
	pl := &d.plans[pc.plan]
	off := pc.item.Offset + (eo - pc.item.ExtentOffset)
	n := max(r.length, blockSize)
	for k := 0; k < n; k += blockSize {
		if k > 0 {
			h = dedupindex.HashBlock(data[k : k+blockSize])
			d.stats.add(CountDedupBytesHashed, blockSize)
		}
		pl.remember(h, eo+uint64(k))
		if inRuns(parts, off+uint64(k)) {
			continue
		}
		pc.rest = addSpan(pc.rest, off+uint64(k), blockSize)
		pl.rest += blockSize
		if _, ok := d.local[h]; !ok && len(d.local) < maxLocalBlocks {
			d.local[h] = localBlock{offset: off + uint64(k), plan: pc.plan}
		}
	}
	for _, p := range parts {
		pc.runs = append(pc.runs, p)
		pl.saved += uint64(p.length)
		if !r.fromIndex {
			// The source must be rewritten before the run is shared, or the
			// run would pin its extent.
			d.plans[r.plan].forced = true
		}
	}
	return n
}

// inRuns reports whether the image offset off lies in one of runs.
func inRuns(runs []run, off uint64) bool {
	for _, r := range runs {
		if off >= r.offset && off < r.offset+uint64(r.length) {
			return true
		}
	}
	return false
}
