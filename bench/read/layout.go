// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"os"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// savingBounds split compressed extents by the share of space they save:
// one saving little costs a read of the whole extent, and its
// decompression, for any block of it, and gives little space back.
var savingBounds = []float64{0.125, 0.25, 0.5}

// layout is how an image's data lies in the filesystem.
type layout struct {
	items   int   // file extent items holding data
	extents int   // distinct data extents they reference
	bytes   int64 // file bytes the items map
	// compressed is how many of those bytes are in compressed extents;
	// bySaving splits them by the saving of their extent, at savingBounds.
	compressed int64
	bySaving   [4]int64
	// extentBytes is the uncompressed size of the distinct compressed
	// extents the image references: what reading all of it decompresses
	// at least.
	extentBytes int64
	// seqDisk is what a read of the whole image takes from the disk: each
	// raw item, and each compressed extent once per run of items in it.
	seqDisk int64
	// perBlock is the sum over the image's data blocks of the bytes a
	// read of that block alone takes from the disk: 4 KiB, or the whole
	// compressed extent holding it.
	perBlock float64
	// jumps counts items that do not go on where the one before them in
	// the file ends on disk (nor in the same compressed extent); backward
	// those of them starting before it.
	jumps, backward int
}

// avgItem is the average size of an item, in bytes.
func (l layout) avgItem() float64 { return float64(l.bytes) / float64(max(1, l.items)) }

// perRead is the average of the bytes a 4 KiB read of one data block
// takes from the disk, readahead aside.
func (l layout) perRead() float64 { return l.perBlock / float64(max(1, l.bytes/blockSize)) }

// imageLayout lists the file at path's data extents and sums up their layout.
func imageLayout(path string) (layout, error) {
	var l layout
	f, err := os.Open(path)
	if err != nil {
		return l, fmt.Errorf("extent layout: %w", err)
	}
	defer f.Close()
	ext, err := btrfs.Extents(f, 0)
	if err != nil {
		return l, fmt.Errorf("extent layout of %s: %w", path, err)
	}
	seen := make(map[uint64]bool)
	var prev *btrfs.Extent
	for i := range ext {
		e := &ext[i]
		if e.DiskBytenr == 0 || e.Type == btrfs.ExtentInline {
			continue
		}
		l.add(e, !seen[e.DiskBytenr])
		seen[e.DiskBytenr] = true
		l.follow(prev, e)
		prev = e
	}
	return l, nil
}

// add counts the data item e; first says its data extent is new.
func (l *layout) add(e *btrfs.Extent, first bool) {
	l.items++
	if first {
		l.extents++
	}
	n := int64(e.Length)
	l.bytes += n
	if e.Compression == btrfs.CompressNone {
		l.perBlock += float64(n)
		return
	}
	l.compressed += n
	if first {
		l.extentBytes += int64(e.RAMBytes)
	}
	saving := 1 - float64(e.DiskNumBytes)/float64(e.RAMBytes)
	b := 0
	for b < len(savingBounds) && saving >= savingBounds[b] {
		b++
	}
	l.bySaving[b] += n
	l.perBlock += float64(n/blockSize) * float64(e.DiskNumBytes)
}

// follow counts what a read going on from the item prev (nil at the
// start) to e, the next in the file, takes from the disk and whether it
// goes on where prev ended there.
func (l *layout) follow(prev, e *btrfs.Extent) {
	sameExtent := prev != nil && e.Compression != btrfs.CompressNone && e.DiskBytenr == prev.DiskBytenr
	switch {
	case e.Compression == btrfs.CompressNone:
		l.seqDisk += int64(e.Length)
	case !sameExtent:
		l.seqDisk += int64(e.DiskNumBytes)
	}
	if prev != nil && !sameExtent && diskStart(e) != diskEnd(prev) {
		l.jumps++
		if diskStart(e) < diskStart(prev) {
			l.backward++
		}
	}
}

// diskStart and diskEnd bound what a read of e takes from the disk: the
// range it maps, or a compressed extent whole.
func diskStart(e *btrfs.Extent) uint64 {
	if e.Compression != btrfs.CompressNone {
		return e.DiskBytenr
	}
	return e.DiskBytenr + e.ExtentOffset
}

func diskEnd(e *btrfs.Extent) uint64 {
	if e.Compression != btrfs.CompressNone {
		return e.DiskBytenr + e.DiskNumBytes
	}
	return diskStart(e) + e.Length
}
