// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// recompress rewrites the cold extent e at the job's level through a
// compressed copy deduplicated into all its references at once. The copy
// holds only what the references cover, packed, so the rest of the extent
// is freed too, less the runs another extent holds, which move there
// (runsElsewhere). It leaves e alone when anything but the set's files
// references it, or when the copy would not take at least a block less.
func (r *jobRun) recompress(files *coldFileSet, e btrfs.Extent) error {
	refs, ok, err := files.refs(e)
	if err != nil || !ok {
		if err == nil {
			r.res.Counters.add(CountColdBytesSkippedShared, e.RAMBytes)
		}
		return err
	}
	spans := coveredSpans(refs)
	size := spansSize(spans)
	if e.Compression == btrfs.CompressNone && (size+blockSize > e.DiskNumBytes || size > maxColdPlainCopy) {
		return nil // hardly anything unreferenced: a copy would not be smaller
	}
	r.res.Counters.add(CountColdBytesExamined, size)
	data, err := readSpans(refs, spans, size)
	if err != nil {
		return err
	}
	runs, err := r.runsElsewhere(e, refs, spans, data)
	if err != nil {
		return err
	}
	own, ownSpans, ownData := refs, spans, data
	if len(runs) > 0 {
		if own = refsWithout(refs, runRanges(runs)); len(own) == 0 {
			// Every block lies elsewhere too: moving the runs frees e.
			if r.moveRuns(runs, refs) {
				r.res.Counters.add(CountColdBytesSharedElsewhere, size)
				r.ledger.replaced[e.DiskBytenr] = e.DiskNumBytes
			}
			return nil
		}
		ownSpans = coveredSpans(own)
		ownData = repack(spans, data, ownSpans)
	}
	var copyExts []btrfs.Extent
	rw, err := r.rewriteCompressed(r.tmpDir, copyRewrite{
		fill: func(cp compressedCopy) error { return cp.write(ownData, copyBase) },
		keep: func(cp compressedCopy) (bool, error) {
			exts, smaller, err := takesLessThan(cp, e.DiskNumBytes)
			copyExts = exts
			// The runs move only for a copy that replaces e: else e
			// stays, and they with it.
			return smaller && err == nil && r.moveRuns(runs, refs), err
		},
		ranges: spanRanges(own, ownSpans),
		dedupe: btrfs.Dedupe,
		made:   func(compressedCopy) ([]btrfs.Extent, error) { return copyExts, nil },
	})
	if err != nil || !rw.done {
		return err
	}
	if rw.whole {
		ownSize := spansSize(ownSpans)
		r.res.Counters.add(CountColdBytesRecompressed, ownSize)
		r.res.Counters.add(CountColdBytesSharedElsewhere, size-ownSize)
		r.ledger.replaced[e.DiskBytenr] = e.DiskNumBytes
	}
	if r.dedup != nil {
		r.dedup.indexCopy(copyExts, ownData)
	}
	return nil
}

// coldSpan is a part of an extent's data that references cover, [lo, hi)
// in the extent, and where it lies in the copy, from copyBase.
type coldSpan struct{ lo, hi, at uint64 }

// coveredSpans merges the parts of the extent refs cover, in extent
// order, packed one after the other in the copy.
func coveredSpans(refs []extentRef) []coldSpan {
	sorted := slices.Clone(refs)
	slices.SortFunc(sorted, func(a, b extentRef) int { return cmp.Compare(a.extentOffset, b.extentOffset) })
	var spans []coldSpan
	for _, ref := range sorted {
		lo, hi := ref.extentOffset, ref.extentOffset+ref.length
		if n := len(spans); n > 0 && lo <= spans[n-1].hi {
			spans[n-1].hi = max(spans[n-1].hi, hi)
			continue
		}
		var at uint64
		if n := len(spans); n > 0 {
			at = spans[n-1].at + spans[n-1].hi - spans[n-1].lo
		}
		spans = append(spans, coldSpan{lo: lo, hi: hi, at: at})
	}
	return spans
}

// spansSize is the bytes spans take in the copy.
func spansSize(spans []coldSpan) uint64 {
	last := spans[len(spans)-1]
	return last.at + last.hi - last.lo
}

// spanRanges are the ranges of the copy that replace each of refs.
func spanRanges(refs []extentRef, spans []coldSpan) []copyRange {
	ranges := make([]copyRange, len(refs))
	for i, ref := range refs {
		j := slices.IndexFunc(spans, func(sp coldSpan) bool { return sp.lo <= ref.extentOffset && ref.extentOffset < sp.hi })
		sp := spans[j] // spans cover every reference
		ranges[i] = copyRange{off: copyBase + sp.at + ref.extentOffset - sp.lo, length: ref.length,
			dests: []btrfs.DedupeDest{{File: ref.file, Offset: ref.offset}}, into: ref.file.Name(), at: ref.offset}
	}
	return ranges
}

// readSpans reads the spans of a disk extent through its references into
// one buffer of size bytes, packed as in the copy.
func readSpans(refs []extentRef, spans []coldSpan, size uint64) ([]byte, error) {
	data := make([]byte, size)
	for _, sp := range spans {
		for pos := sp.lo; pos < sp.hi; {
			r, ok := refCovering(refs, pos)
			if !ok {
				return nil, fmt.Errorf("no reference covers byte %d of a span", pos) // spans are what refs cover
			}
			n := min(sp.hi, r.extentOffset+r.length) - pos
			at := sp.at + pos - sp.lo
			if _, err := r.file.ReadAt(data[at:at+n], int64(r.offset+pos-r.extentOffset)); err != nil {
				return nil, fmt.Errorf("read %s: %w", r.file.Name(), err)
			}
			pos += n
		}
	}
	return data, nil
}

// refs resolves every reference to e's disk extent to a file of the set:
// false when one is not (or e is gone or changed meanwhile).
func (s *coldFileSet) refs(e btrfs.Extent) ([]extentRef, bool, error) {
	items, err := btrfs.LogicalInodes(s.dir, e.DiskBytenr)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	// Counted apart from the items: a reference LOGICAL_INO cannot
	// reach (a tree being relocated, say) still makes e shared.
	total, err := btrfs.ExtentRefCount(s.dir, e.DiskBytenr)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && total != uint64(len(items))) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	refs := make([]extentRef, 0, len(items))
	for _, it := range items {
		if it.Root != s.root {
			return nil, false, nil
		}
		f, ok, err := s.file(it.Inode)
		if err != nil || !ok {
			return nil, false, err
		}
		item, err := btrfs.ExtentAt(f, it.Offset)
		if err != nil {
			return nil, false, fmt.Errorf("read extent of %s at %d: %w", f.Name(), it.Offset, err)
		}
		if item.DiskBytenr != e.DiskBytenr || item.Offset != it.Offset {
			return nil, false, nil
		}
		refs = append(refs, extentRef{refLoc: refLoc{name: s.resolver.file[it.Inode], offset: item.Offset,
			extentOffset: item.ExtentOffset, length: item.Length}, file: f})
	}
	return refs, len(refs) > 0, nil
}
