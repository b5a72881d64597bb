// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"fmt"
	"os"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

// copyRewrite is data to rewrite compressed without unsharing it, as both
// the compression stage (compressShared) and the dedup stage
// (rewriteRests) do: the data is written to a compressed copy, which is
// then deduplicated into every reference to it, so that all of them move
// to the copy together. Its hooks are what the stages do differently.
type copyRewrite struct {
	// fill writes the data to the copy.
	fill func(compressedCopy) error
	// keep reports whether the copy is worth deduplicating into place.
	keep func(compressedCopy) (bool, error)
	// ranges are the parts of the copy and the references each replaces.
	ranges []copyRange
	// dedupe deduplicates a range of the copy into its references.
	dedupe func(src *os.File, off, n uint64, dests []btrfs.DedupeDest) ([]uint64, error)
	// made lists the copy's extents once every range is deduplicated.
	made func(compressedCopy) ([]btrfs.Extent, error)
}

// copyRange is a range of a compressed copy and the references to replace
// with it.
type copyRange struct {
	off, length uint64 // in the copy
	dests       []btrfs.DedupeDest
	// into and at are the file and offset an error names.
	into string
	at   uint64
}

// copyRewritten is what rewriteCompressed did.
type copyRewritten struct {
	done  bool           // the copy replaced the data
	whole bool           // every reference was replaced whole
	made  []btrfs.Extent // the copy's extents, recorded as made by the job
}

// rewriteCompressed carries out cr through a new compressed copy in dir:
// it fills the copy and, unless the copy is not worth it, deduplicates each range into place and records the
// copy's extents as made by the job. The copy is removed; what was
// deduplicated from it stays.
func (r *jobRun) rewriteCompressed(dir *fsroot.Root, cr copyRewrite) (copyRewritten, error) {
	var rw copyRewritten
	cp, err := newCompressedCopy(dir, r.enc)
	if err != nil {
		return rw, err
	}
	defer cp.remove()
	if err := cr.fill(cp); err != nil {
		return rw, err
	}
	if ok, err := cr.keep(cp); err != nil || !ok {
		return rw, err
	}
	rw.whole = true
	for _, rg := range cr.ranges {
		done, err := cr.dedupe(cp.File, rg.off, rg.length, rg.dests)
		if err != nil {
			return rw, fmt.Errorf("deduplicate compressed copy into %s at %d: %w", rg.into, rg.at, err)
		}
		for _, n := range done {
			rw.whole = rw.whole && n == rg.length
		}
	}
	if rw.made, err = cr.made(cp); err != nil {
		return copyRewritten{}, err
	}
	for _, e := range rw.made {
		r.ledger.created[e.DiskBytenr] = e.DiskNumBytes
	}
	rw.done = true
	return rw, nil
}
