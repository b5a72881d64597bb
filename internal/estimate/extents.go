// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// blockSize is the unit deduplicated: btrfs's sector size.
const blockSize = 4096

// class is what a full optimization does to a data extent.
type class uint8

const (
	// classKept: left as it is. Already compressed extents, those of
	// no-COW files, those referenced only by files a job does not read
	// (dirty and import images), and revisions' extents partly
	// preallocated.
	classKept class = iota
	// classSource: left as it is, because something beyond the volume's
	// clean image, revisions and precache holds it (another volume, a
	// running VM's dirty image, a snapshot); its blocks are found by
	// deduplication all the same.
	classSource
	// classDedup: an image's extent, taken apart: zero blocks and
	// preallocated ranges become holes, blocks found elsewhere are shared,
	// the rest is compressed.
	classDedup
	// classCompress: an extent only revisions hold, compressed only.
	classCompress
)

// ref is one file extent item: the file range [fileOffset, +length) maps
// the extent's bytes from extentOffset on.
type ref struct {
	file                             int
	fileOffset, extentOffset, length uint64
	prealloc                         bool // reads as zeros, has no data
}

// span is a range of bytes of an extent, by offset into it.
type span struct{ offset, length uint64 }

// extent is one data extent of the pool, however many files share it.
type extent struct {
	bytenr, diskBytes uint64
	compressed        bool
	vm                int // the first VM visited that references it
	kinds             fileKind
	volumes           int // distinct volumes referencing it
	noCOW             bool
	outside           bool // referenced from outside the pool
	refs              []ref
	class             class
	// live are the written ranges any file references, merged; prealloc
	// the bytes only preallocated ranges reference.
	live      []span
	liveBytes uint64
	prealloc  uint64
}

// vmCounts are the exact figures of one VM, from the extent listing.
type vmCounts struct {
	logical, disk uint64
	// keptDisk is the disk space of extents left as they are.
	keptDisk, keptLogical uint64
	// prealloc counts the preallocated bytes that become holes.
	prealloc uint64
}

// listExtents reads every file's extent items and groups them by data
// extent, in visiting order. Inline extents are counted in counts and
// left out.
func listExtents(l *layout, counts []vmCounts) ([]extent, error) {
	var exts []extent
	byAddr := map[uint64]int{}
	lastVolume := map[uint64]int{}
	for i, pf := range l.files {
		items, err := btrfs.Extents(pf.f, 0)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if it.Type == btrfs.ExtentInline {
				if err := countInline(pf, it, &counts[pf.vm]); err != nil {
					return nil, err
				}
				continue
			}
			if it.IsHole() {
				continue
			}
			k, ok := byAddr[it.DiskBytenr]
			if !ok {
				k = len(exts)
				byAddr[it.DiskBytenr] = k
				exts = append(exts, extent{bytenr: it.DiskBytenr, diskBytes: it.DiskNumBytes,
					compressed: it.Compression != btrfs.CompressNone, vm: pf.vm})
			}
			e := &exts[k]
			if v, seen := lastVolume[it.DiskBytenr]; !seen || v != pf.volume {
				e.volumes++ // files come volume by volume
				lastVolume[it.DiskBytenr] = pf.volume
			}
			e.kinds |= pf.kind
			e.noCOW = e.noCOW || pf.noCOW
			e.refs = append(e.refs, ref{file: i, fileOffset: it.Offset, extentOffset: it.ExtentOffset, length: it.Length,
				prealloc: it.Type == btrfs.ExtentPrealloc})
		}
	}
	return exts, nil
}

func countInline(pf poolFile, it btrfs.Extent, c *vmCounts) error {
	size, err := btrfs.InlineDataSize(pf.f)
	if err != nil {
		return err
	}
	c.logical += it.RAMBytes
	c.disk += size
	c.keptLogical += it.RAMBytes
	c.keptDisk += size
	return nil
}

// settle finds what references each extent from outside the pool, merges
// its live ranges, classifies it and adds it to its VM's counts.
func settle(l *layout, exts []extent, counts []vmCounts, progress func(done uint64)) error {
	refs, err := refCounts(l.root, exts, progress)
	if err != nil {
		return err
	}
	for i := range exts {
		e := &exts[i]
		// An extent written since the last transaction commit is not
		// counted yet (0); nothing else can hold it yet.
		e.outside = refs[i] > uint64(len(e.refs))
		e.live, e.liveBytes = liveSpans(e.refs, false)
		_, referenced := liveSpans(e.refs, true)
		e.prealloc = referenced - e.liveBytes
		e.class = classOf(e)
		c := &counts[e.vm]
		c.logical += referenced
		c.disk += e.diskBytes
		switch e.class {
		case classKept, classSource:
			c.keptDisk += e.diskBytes
			c.keptLogical += referenced
		case classDedup:
			c.prealloc += e.prealloc
		}
	}
	return nil
}

// refGap joins extents closer than this into one walk of the extent tree.
const refGap = 64 << 20

// refCounts returns every extent's reference count, walking the extent
// tree over the ranges the pool's extents lie in, in address order.
func refCounts(dir *os.File, exts []extent, progress func(done uint64)) ([]uint64, error) {
	order := make([]int, len(exts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(exts[a].bytenr, exts[b].bytenr) })
	counts := make([]uint64, len(exts))
	for start := 0; start < len(order); {
		end := start + 1
		for end < len(order) && exts[order[end]].bytenr < exts[order[end-1]].bytenr+refGap {
			end++
		}
		win, j := order[start:end], 0
		err := btrfs.ExtentRefCounts(dir, exts[win[0]].bytenr, exts[win[len(win)-1]].bytenr+1, func(bytenr, refs uint64) error {
			for j < len(win) && exts[win[j]].bytenr < bytenr {
				j++
			}
			if j < len(win) && exts[win[j]].bytenr == bytenr {
				counts[win[j]] = refs
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("estimate: %w", err)
		}
		progress(uint64(end))
		start = end
	}
	return counts, nil
}

func classOf(e *extent) class {
	inImage := e.kinds&(kindImage|kindPrecache) != 0
	switch {
	case e.compressed || e.noCOW:
		return classKept
	case e.outside || e.volumes > 1 || e.kinds&kindOther != 0:
		if inImage {
			return classSource
		}
		return classKept
	case inImage:
		return classDedup
	case e.kinds&kindRevision != 0 && e.prealloc == 0:
		return classCompress
	}
	return classKept
}

// liveSpans merges the ranges the references map, in extent offsets:
// the written ones, or all with prealloc.
func liveSpans(refs []ref, prealloc bool) ([]span, uint64) {
	spans := make([]span, 0, len(refs))
	for _, r := range refs {
		if prealloc || !r.prealloc {
			spans = append(spans, span{r.extentOffset, r.length})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.offset, b.offset) })
	out := spans[:0]
	var total uint64
	for _, s := range spans {
		if k := len(out) - 1; k >= 0 && s.offset <= out[k].offset+out[k].length {
			end := max(out[k].offset+out[k].length, s.offset+s.length)
			total += end - (out[k].offset + out[k].length)
			out[k].length = end - out[k].offset
			continue
		}
		out = append(out, s)
		total += s.length
	}
	return slices.Clip(out), total
}

// readExtent reads the extent's bytes [eo, eo+len(buf)) through the files
// referencing them; every byte must be live.
func readExtent(l *layout, e *extent, eo uint64, buf []byte) error {
	for done := uint64(0); done < uint64(len(buf)); {
		at := eo + done
		i := slices.IndexFunc(e.refs, func(r ref) bool {
			return !r.prealloc && r.extentOffset <= at && at < r.extentOffset+r.length
		})
		if i < 0 {
			return fmt.Errorf("estimate: no file references byte %d of the extent at %d", at, e.bytenr)
		}
		r := e.refs[i]
		n := min(uint64(len(buf))-done, r.extentOffset+r.length-at)
		pf, part := l.files[r.file], buf[done:done+n]
		// The file's last sector can reach past its size: zeros.
		got, err := pf.f.ReadAt(part, int64(r.fileOffset+at-r.extentOffset))
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s at %d: %w", pf.f.Name(), r.fileOffset+at-r.extentOffset, err)
		}
		clear(part[got:])
		done += n
	}
	return nil
}
