// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// recompress rewrites the cold extent e at the job's level through a
// compressed copy deduplicated into all its references at once. It leaves
// e alone when anything but the set's files references it, or when the
// copy would not take at least a block less.
func (r *jobRun) recompress(files *coldFileSet, e btrfs.Extent) error {
	refs, ok, err := files.refs(e)
	if err != nil || !ok {
		if err == nil {
			r.res.Counters.add(CountColdBytesSkippedShared, e.RAMBytes)
		}
		return err
	}
	lo, hi := refs[0].extentOffset, refs[0].extentOffset+refs[0].length
	for _, ref := range refs {
		lo, hi = min(lo, ref.extentOffset), max(hi, ref.extentOffset+ref.length)
	}
	r.res.Counters.add(CountColdBytesExamined, hi-lo)
	var data []byte
	var copyExts []btrfs.Extent
	rw, err := r.rewriteCompressed(r.tmpDir, copyRewrite{
		fill: func(cp compressedCopy) (bool, error) {
			var whole bool
			if data, whole, err = readThrough(refs, lo, hi); err != nil || !whole {
				return false, err
			}
			return true, cp.write(data, copyBase)
		},
		keep: func(cp compressedCopy) (bool, error) {
			exts, smaller, err := takesLessThan(cp, e.DiskNumBytes)
			copyExts = exts
			return smaller, err
		},
		ranges: refRanges(refs, lo),
		dedupe: btrfs.Dedupe,
		made:   func(compressedCopy) ([]btrfs.Extent, error) { return copyExts, nil },
	})
	if err != nil || !rw.done {
		return err
	}
	if rw.whole {
		r.res.Counters.add(CountColdBytesRecompressed, hi-lo)
		r.ledger.replaced[e.DiskBytenr] = e.DiskNumBytes
	}
	if r.dedup != nil {
		r.dedup.indexCopy(copyExts, data)
	}
	return nil
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
		refs = append(refs, extentRef{refLoc: refLoc{name: s.names[it.Inode], offset: item.Offset,
			extentOffset: item.ExtentOffset, length: item.Length}, file: f})
	}
	return refs, len(refs) > 0, nil
}

// readThrough reads bytes [lo, hi) of a disk extent through its
// references; false when they leave a gap.
func readThrough(refs []extentRef, lo, hi uint64) ([]byte, bool, error) {
	data := make([]byte, hi-lo)
	for pos := lo; pos < hi; {
		r, ok := refCovering(refs, pos)
		if !ok {
			return nil, false, nil
		}
		n := min(hi, r.extentOffset+r.length) - pos
		if _, err := r.file.ReadAt(data[pos-lo:pos-lo+n], int64(r.offset+pos-r.extentOffset)); err != nil {
			return nil, false, fmt.Errorf("read %s: %w", r.file.Name(), err)
		}
		pos += n
	}
	return data, true, nil
}
