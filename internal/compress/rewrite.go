// SPDX-License-Identifier: GPL-2.0-or-later

package compress

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"syscall"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// defragPasses retries pieces the kernel skipped: range defrag is best
// effort (it gives up on pages busy with I/O and when a signal is
// pending), so the result is checked and the rest asked for again.
const defragPasses = 5

// Range is the part of a file a rewrite covers: the extent items that
// overlap [Offset, Offset+Length).
type Range struct {
	Offset, Length uint64
	// Since and Until bound the generations of the extent items to work
	// on (Until 0: no bound): new since a point the caller chose, and not
	// newer than its work, whose own rewrites must not be taken for work
	// again.
	Since, Until uint64
}

// Result is what rewrites achieved, in logical bytes.
type Result struct {
	BytesExamined   uint64 // of the uncompressed extents considered
	BytesCompressed uint64 // rewritten compressed
	SkippedShared   uint64 // left alone: shared beyond what could be rewritten
}

// Add adds o's bytes to r's.
func (r *Result) Add(o Result) {
	r.BytesExamined += o.BytesExamined
	r.BytesCompressed += o.BytesCompressed
	r.SkippedShared += o.SkippedShared
}

// Rewriter rewrites files' exclusive pieces compressed by range defrag.
type Rewriter struct {
	level   int
	onLevel func(error)
	// replaced and created record the disk extents (bytenr -> disk bytes)
	// the rewrites replaced and the ones they made, unless nil.
	replaced, created map[uint64]uint64
	// worth is the verdict on each disk extent met, by its address: an
	// extent is judged once, so that the pieces of it the chunks of a
	// file cut apart are all rewritten or none. A range defrag of some
	// would leave the extent pinned by the others beside their copy.
	worth map[uint64]bool
}

// NewRewriter returns a Rewriter that asks range defrag for zstd at level
// (0: the kernel's default). A kernel without levels in range defrag is
// told to onLevel once, and the default level used from then on. The disk
// extents (bytenr -> disk bytes) its rewrites replace are added to
// replaced, the ones they make to created; either may be nil.
func NewRewriter(level int, onLevel func(error), replaced, created map[uint64]uint64) *Rewriter {
	return &Rewriter{level: level, onLevel: onLevel, replaced: replaced, created: created, worth: map[uint64]bool{}}
}

// Rewrite rewrites f's uncompressed extents in r compressed, those whose
// sample saves minSaving of its bytes: the ones only f references by a
// range defrag, the shared ones by onShared.
func (w *Rewriter) Rewrite(f *os.File, r Range, minSaving float64, onShared func(btrfs.Extent) (Result, error)) (Result, error) {
	pieces, items, err := piecesIn(f, r)
	if err != nil || len(pieces) == 0 {
		return Result{}, err
	}
	largest := largestItems(pieces, items)
	ino, err := InodeOf(f)
	if err != nil {
		return Result{}, err
	}
	var res Result
	var exclusive []btrfs.Extent
	for _, pc := range pieces {
		res.BytesExamined += pc.Length
		worth, judged := w.worth[pc.DiskBytenr]
		if !judged {
			// Sampled where f holds most of it, whatever piece comes first.
			if worth, err = worthCompressing(f, largest[pc.DiskBytenr], minSaving); err != nil {
				return res, err
			}
			w.worth[pc.DiskBytenr] = worth
		}
		if !worth {
			continue
		}
		only, err := ReferencedOnlyBy(f, ino, pc)
		if err != nil {
			return res, err
		}
		if only {
			exclusive = append(exclusive, pc)
			continue
		}
		sr, err := onShared(pc)
		res.Add(sr)
		if err != nil {
			return res, err
		}
	}
	er, err := w.defragExclusive(f, r, exclusive)
	res.Add(er)
	return res, err
}

// Compressible tells an extent item worth a look: regular, written and
// not yet compressed.
func Compressible(e btrfs.Extent) bool {
	return e.Type == btrfs.ExtentRegular && !e.IsHole() && e.Compression == btrfs.CompressNone
}

// piecesIn returns f's uncompressed regular extent items within r,
// clipped to it.
func piecesIn(f *os.File, r Range) (pieces, items []btrfs.Extent, err error) {
	exts, err := btrfs.Extents(f, r.Since)
	if err != nil {
		return nil, nil, err
	}
	var out []btrfs.Extent
	end := r.Offset + r.Length
	for _, e := range exts {
		if e.Offset >= end || e.Offset+e.Length <= r.Offset || (r.Until != 0 && e.Generation > r.Until) || !Compressible(e) {
			continue
		}
		lo, hi := max(e.Offset, r.Offset), min(e.Offset+e.Length, end)
		e.ExtentOffset += lo - e.Offset
		e.Offset, e.Length = lo, hi-lo
		out = append(out, e)
	}
	return out, exts, nil
}

// largestItems maps the disk extent of each of pieces to the largest of
// items referencing it.
func largestItems(pieces, items []btrfs.Extent) map[uint64]btrfs.Extent {
	largest := map[uint64]btrfs.Extent{}
	for _, pc := range pieces {
		largest[pc.DiskBytenr] = pc
	}
	for _, it := range items {
		if l, ok := largest[it.DiskBytenr]; ok && it.Length > l.Length {
			largest[it.DiskBytenr] = it
		}
	}
	return largest
}

// ReferencedOnlyBy reports whether every reference to pc's disk extent,
// from any subvolume or snapshot, is an item of the file f (inode ino).
// FIEMAP's shared flag is not used: merged extent maps make it misreport
// at extent boundaries. An extent not yet in a committed transaction has
// no back references to ask about, and counts as not exclusive.
func ReferencedOnlyBy(f *os.File, ino uint64, pc btrfs.Extent) (bool, error) {
	refs, err := References(f, pc.DiskBytenr)
	return OnlyItemsOf(refs, ino), err
}

// References lists every item referencing the disk extent at bytenr, in
// any subvolume or snapshot (btrfs.LogicalInodes), through f, any file on
// the filesystem: none for an extent not yet in a committed transaction.
func References(f *os.File, bytenr uint64) ([]btrfs.InodeRef, error) {
	refs, err := btrfs.LogicalInodes(f, bytenr)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return refs, err
}

// OnlyItemsOf reports whether refs, not empty, are all items of one file,
// inode ino of the subvolume the first is in.
func OnlyItemsOf(refs []btrfs.InodeRef, ino uint64) bool {
	for _, r := range refs {
		if r.Inode != ino || r.Root != refs[0].Root {
			return false
		}
	}
	return len(refs) > 0
}

// InodeOf returns f's inode number.
func InodeOf(f *os.File) (uint64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return info.Sys().(*syscall.Stat_t).Ino, nil
}

// defragExclusive rewrites extents only f references, compressed, with a
// range defrag per contiguous run, and retries what the kernel skipped.
// Each pass waits for its writeback before listing: range defrag only
// starts it, and until the new extents have their items the listing shows
// the old ones, which would be counted as skipped and rewritten again.
func (w *Rewriter) defragExclusive(f *os.File, r Range, pieces []btrfs.Extent) (Result, error) {
	var res Result
	if len(pieces) == 0 {
		return res, nil
	}
	before := map[uint64]uint64{} // disk bytenr -> disk bytes, of extents being replaced
	for _, pc := range pieces {
		before[pc.DiskBytenr] = pc.DiskNumBytes
		record(w.replaced, pc)
	}
	// Every extent in the range now, so that the ones defrag makes are
	// told apart by address: their generation may equal the caller's own.
	existing := map[uint64]bool{}
	present, err := piecesAfter(f, r)
	if err != nil {
		return res, err
	}
	for _, e := range present {
		existing[e.DiskBytenr] = true
	}
	todo := pieces
	for pass := 0; pass < defragPasses && len(todo) > 0; pass++ {
		for _, run := range contiguous(todo) {
			if err := w.defrag(f, run.Offset, run.Length); err != nil {
				return res, err
			}
		}
		if err := btrfs.WriteBack(f); err != nil {
			return res, err
		}
		after, _, err := piecesIn(f, r)
		if err != nil {
			return res, err
		}
		todo = todo[:0]
		for _, pc := range after {
			if _, old := before[pc.DiskBytenr]; old {
				todo = append(todo, pc)
			}
		}
	}
	exts, err := piecesAfter(f, r)
	if err != nil {
		return res, err
	}
	for _, e := range exts {
		if existing[e.DiskBytenr] {
			continue
		}
		record(w.created, e)
		if e.Compression != btrfs.CompressNone {
			res.BytesCompressed += e.Length
		}
	}
	return res, nil
}

// record adds e's disk extent to ledger, unless ledger is nil.
func record(ledger map[uint64]uint64, e btrfs.Extent) {
	if ledger != nil {
		ledger[e.DiskBytenr] = e.DiskNumBytes
	}
}

// piecesAfter lists the written extent items overlapping r that are at
// least as new as r.Since, which rewritten ones are.
func piecesAfter(f *os.File, r Range) ([]btrfs.Extent, error) {
	exts, err := btrfs.Extents(f, r.Since)
	if err != nil {
		return nil, err
	}
	var out []btrfs.Extent
	for _, e := range exts {
		if e.Offset < r.Offset+r.Length && r.Offset < e.Offset+e.Length && !e.IsHole() {
			out = append(out, e)
		}
	}
	return out, nil
}

func (w *Rewriter) defrag(f *os.File, offset, length uint64) error {
	err := btrfs.DefragCompress(f, offset, length, w.level)
	if errors.Is(err, btrfs.ErrLevelUnsupported) {
		w.onLevel(err)
		w.level = 0
		err = btrfs.DefragCompress(f, offset, length, 0)
	}
	return err
}

// contiguous merges pieces into runs of adjacent file ranges.
func contiguous(pieces []btrfs.Extent) []btrfs.Extent {
	sorted := append([]btrfs.Extent(nil), pieces...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Offset < sorted[j].Offset })
	var runs []btrfs.Extent
	for _, pc := range sorted {
		if k := len(runs) - 1; k >= 0 && runs[k].Offset+runs[k].Length == pc.Offset {
			runs[k].Length += pc.Length
			continue
		}
		runs = append(runs, btrfs.Extent{Offset: pc.Offset, Length: pc.Length})
	}
	return runs
}
