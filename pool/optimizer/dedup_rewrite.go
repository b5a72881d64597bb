// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"fmt"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
)

// rewrite writes the image's bytes in the work's rests to compressed
// copies and deduplicates each rest into its piece's files, then indexes
// the copies' blocks where they now lie. It returns the work left to
// carry out.
//
// The rests of uncompressed extents go to one copy: it takes at most the
// rests' size, which is less than the extents it frees. Those of
// compressed extents go to another, which may take more than the extents
// free, where they were compressed better than the copy is (at a higher
// level, say): that copy is used only when it takes no more. Otherwise
// those compressed extents are left alone, their pieces dropped from the
// work, and counted; each lies whole in the batch (see batches), so
// nothing of them was changed yet.
func (d *deduper) rewrite(img dedupDest, work []pieceDests) ([]pieceDests, error) {
	var plain, packed []pieceDests
	for _, w := range work {
		if pl := &d.plans[d.pieces[w.piece].plan]; pl.compressed && pl.rest > 0 {
			packed = append(packed, w)
		} else {
			plain = append(plain, w)
		}
	}
	if _, err := d.rewriteRests(img, plain, 0); err != nil {
		return nil, err
	}
	freed := map[int]uint64{}
	for _, w := range packed {
		pl := d.pieces[w.piece].plan
		freed[pl] = d.plans[pl].diskBytes
	}
	var limit uint64
	for _, n := range freed {
		limit += n
	}
	done, err := d.rewriteRests(img, packed, limit)
	if err != nil || done {
		return work, err
	}
	for pl := range freed {
		d.plans[pl].dests = nil // kept: its blocks are indexed where they lie
		for _, it := range d.plans[pl].items {
			d.stats.add(CountDedupBytesKeptWouldGrow, it.Length)
		}
	}
	return plain, nil
}

// rewriteRests writes the rests of work to one compressed copy and, unless
// the copy takes more than limit bytes on disk (0: no limit), deduplicates
// them into place and indexes them. It reports whether it did.
func (d *deduper) rewriteRests(img dedupDest, work []pieceDests, limit uint64) (bool, error) {
	buf, err := d.readRests(img, work)
	if err != nil || len(buf) == 0 {
		return true, err
	}
	var listed []btrfs.Extent // by keep, when it judged the copy
	rw, err := d.run.rewriteCompressed(d.tmpDir, copyRewrite{
		fill: func(cp compressedCopy) error {
			if err := d.writeStretches(cp, work, buf); err != nil {
				return err
			}
			failpoint.Hit("dedup.after-rewrite-copy")
			return nil
		},
		keep: func(cp compressedCopy) (bool, error) {
			if limit == 0 {
				return true, nil
			}
			exts, disk, err := cp.diskBytes()
			listed = exts
			return disk <= limit, err
		},
		ranges: d.restRanges(img, work),
		dedupe: d.dedupeTimed,
		made: func(cp compressedCopy) ([]btrfs.Extent, error) {
			d.stats.add(CountDedupBytesRewritten, uint64(len(buf)))
			if listed != nil {
				return listed, nil
			}
			return cp.extents()
		},
	})
	if err != nil || !rw.done {
		return false, err
	}
	d.stats.add(CountCompressBytesCompressed, compressedBytes(rw.made))
	d.indexCopy(rw.made, buf)
	return true, nil
}

// restRanges are the ranges of a copy of the work's rests, one after the
// other at copyBase, that replace each rest in its piece's files.
func (d *deduper) restRanges(img dedupDest, work []pieceDests) []copyRange {
	var ranges []copyRange
	pos := uint64(copyBase)
	for _, w := range work {
		for _, s := range d.pieces[w.piece].rest {
			targets := make([]btrfs.DedupeDest, len(w.dests))
			for i, dst := range w.dests {
				targets[i] = btrfs.DedupeDest{File: dst.f, Offset: s.offset}
			}
			ranges = append(ranges, copyRange{off: pos, length: s.length, dests: targets, into: img.path, at: s.offset})
			pos += s.length
		}
	}
	return ranges
}

// writeStretches writes buf, the work's rests one after the other, to cp
// at copyBase, a stretch at a time: each run of rests contiguous in the
// image starts a compressed unit of its own. A unit holding the ends of
// two ranges the image reads apart would be read whole for each.
func (d *deduper) writeStretches(cp compressedCopy, work []pieceDests, buf []byte) error {
	var from, pos uint64
	end := uint64(1<<64 - 1) // image offset where the last rest ended
	for _, w := range work {
		for _, s := range d.pieces[w.piece].rest {
			if s.offset != end && pos > from {
				if err := cp.write(buf[from:pos], copyBase+from); err != nil {
					return err
				}
				from = pos
			}
			pos += s.length
			end = s.offset + s.length
		}
	}
	if pos == from {
		return nil
	}
	return cp.write(buf[from:pos], copyBase+from)
}

// diskBytes lists the copy's extents and the disk space they take.
func (c compressedCopy) diskBytes() ([]btrfs.Extent, uint64, error) {
	exts, err := c.extents()
	return exts, diskBytesOf(exts), err
}

// compressedBytes is the logical bytes of exts stored compressed.
func compressedBytes(exts []btrfs.Extent) uint64 {
	var n uint64
	for _, e := range exts {
		if e.Compression != btrfs.CompressNone {
			n += e.Length
		}
	}
	return n
}

// readRests reads the image's bytes in the work's rests, one after the
// other, into the stage's copy buffer.
func (d *deduper) readRests(img dedupDest, work []pieceDests) ([]byte, error) {
	var total uint64
	for _, w := range work {
		for _, s := range d.pieces[w.piece].rest {
			total += s.length
		}
	}
	if cap(d.copyBuf) < int(total) {
		d.copyBuf = make([]byte, total)
	}
	buf := d.copyBuf[:total]
	pos := uint64(0)
	for _, w := range work {
		for _, s := range d.pieces[w.piece].rest {
			if _, err := img.f.ReadAt(buf[pos:pos+s.length], int64(s.offset)); err != nil {
				return nil, fmt.Errorf("read %s at %d: %w", img.path, s.offset, err)
			}
			pos += s.length
		}
	}
	return buf, nil
}

// indexCopy indexes the blocks of the copy's extents (buf, written at
// copyBase) where they lie.
func (d *deduper) indexCopy(exts []btrfs.Extent, buf []byte) {
	end := copyBase + uint64(len(buf))
	for _, e := range exts {
		compressed := e.Compression != btrfs.CompressNone
		for p := e.Offset; p+blockSize <= min(e.Offset+e.Length, end); p += blockSize {
			blk := buf[p-copyBase : p-copyBase+blockSize]
			if addr, ok := dedupindex.BlockAddr(e.DiskBytenr, compressed, e.ExtentOffset+p-e.Offset); ok && !isZero(blk) {
				d.idx.Insert(dedupindex.HashBlock(blk), addr)
			}
		}
	}
}

// diskBytesOf is the disk space of the data extents exts reference, each
// once.
func diskBytesOf(exts []btrfs.Extent) uint64 {
	seen := map[uint64]bool{}
	var n uint64
	for _, e := range exts {
		if !seen[e.DiskBytenr] {
			seen[e.DiskBytenr] = true
			n += e.DiskNumBytes
		}
	}
	return n
}
