// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// run is a verified match: length bytes of the image at offset equal
// src's. hash and addr name the index entry that found it (none for a
// match within the job's own data, whose source extent is plan's).
type run struct {
	src        blockSource
	offset     uint64
	length     int
	hash, addr uint64
	fromIndex  bool
	plan       int
}

// localBlock is where the job first met a block it is to rewrite: the
// image offset, and the plan of the extent holding it.
type localBlock struct {
	offset uint64
	plan   int
}

// findRun returns the longest verified run of blocks, from the block at
// the start of data (image offset off, hash h) on, that an older copy
// holds: first among the job's own earlier blocks, then in the index. A
// run of length 0 means there is none.
func (d *deduper) findRun(img dedupDest, h, off uint64, data []byte) (run, error) {
	if lb, ok := d.local[h]; ok && lb.offset != off {
		src := blockSource{file: img.file, offset: lb.offset}
		n, err := d.runLength(src, img, off, data)
		if err != nil || n > 0 {
			return run{src: src, offset: off, length: n, plan: lb.plan}, err
		}
	}
	d.addrBuf = d.idx.Lookup(d.addrBuf[:0], h)
	if len(d.addrBuf) == 0 {
		return run{}, nil
	}
	d.stats.add(CountDedupTries, 1)
	// An address in the pass's own data is an entry gone stale: sharing
	// it would pin an extent the pass may free.
	src, addr, n, err := d.indexedRun(d.addrBuf, h, img, off, data, d.inPass, nil)
	if err != nil || n == 0 {
		if err == nil {
			d.stats.add(CountDedupMisses, 1)
		}
		return run{}, err
	}
	d.stats.add(CountDedupHits, 1)
	return run{src: src, offset: off, length: n, hash: h, addr: addr, fromIndex: true}, nil
}

// indexedRun returns the first run, from the start of data (the image's
// bytes at off, hash h), that one of the index's addrs for h leads to,
// verified byte for byte and cut by clip (nil: uncut), with its source
// and address; length 0 when there is none. Addresses skip refuses are
// passed over; one whose every source holds other bytes is erased.
func (d *deduper) indexedRun(addrs []uint64, h uint64, img dedupDest, off uint64, data []byte,
	skip func(addr uint64) bool, clip func(src blockSource, n int) int) (blockSource, uint64, int, error) {
	if d.res == nil {
		var err error
		if d.res, err = d.p.newResolver(); err != nil {
			return blockSource{}, 0, 0, err
		}
	}
	for _, addr := range addrs {
		if skip(addr) {
			continue
		}
		srcs, same := d.res.resolve(addr, d.source), false
		for _, src := range srcs {
			n, err := d.runLength(src, img, off, data)
			if err != nil {
				return blockSource{}, 0, 0, err
			}
			same = same || n > 0
			if clip != nil {
				n = clip(src, n)
			}
			if n > 0 {
				return src, addr, n, nil
			}
		}
		if len(srcs) > 0 && !same {
			d.idx.Erase(h, addr) // the data there changed since it was indexed
		}
	}
	return blockSource{}, 0, 0, nil
}

// inPass reports whether addr lies in one of the extents the pass may
// still free: the segment's, or a later segment's.
func (d *deduper) inPass(addr uint64) bool {
	base, _ := dedupindex.SplitAddr(addr)
	i, _ := slices.BinarySearchFunc(d.spans, base, func(s diskSpan, a uint64) int { return cmp.Compare(s.start, a) })
	if i < len(d.spans) && d.spans[i].start == base {
		return true
	}
	return i > 0 && base < d.spans[i-1].end
}

// diskSpan is the logical address range of a data extent.
type diskSpan struct{ start, end uint64 }

// runLength returns how many bytes from the start of data (the image's
// bytes at off) equal src's, in whole non-zero blocks. The source is read
// and compared before any dedupe, so a stale index entry costs a read
// rather than an ioctl. It is read in windows doubling from firstWindow,
// so that a short run costs a short read, not one of the rest of data.
func (d *deduper) runLength(src blockSource, img dedupDest, off uint64, data []byte) (int, error) {
	f, err := d.source(src.file)
	if err != nil || f == nil {
		return 0, err
	}
	n := len(data)
	if src.file == img.file && src.offset < off+uint64(n) && off < src.offset+uint64(n) {
		// Same-file ranges must not overlap.
		n = int(max(src.offset, off) - min(src.offset, off))
	}
	length := 0
	for window := firstWindow; length+blockSize <= n; window *= 2 {
		end := min(length+window, n)
		if cap(d.cmpBuf) < end-length {
			d.cmpBuf = make([]byte, max(end-length, maxWindow))
		}
		have := d.cmpBuf[:end-length]
		got, err := f.ReadAt(have, int64(src.offset)+int64(length))
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read %s at %d: %w", d.p.Volumes.Path(src.file), src.offset+uint64(length), err)
		}
		for b := 0; b+blockSize <= got; b += blockSize {
			blk := data[length : length+blockSize]
			if !bytes.Equal(have[b:b+blockSize], blk) || isZero(blk) {
				return length, nil
			}
			length += blockSize
		}
		if got < len(have) {
			break // the source ends
		}
		window = min(window, maxWindow/2)
	}
	return length, nil
}

// source opens file read-only, once per job; nil when it is gone.
func (d *deduper) source(file volume.File) (*os.File, error) {
	if f, ok := d.srcs[file]; ok {
		return f, nil
	}
	f, err := d.p.Volumes.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d.srcs[file] = f
	return f, nil
}

var zeroBlock [blockSize]byte

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), blockSize)
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
