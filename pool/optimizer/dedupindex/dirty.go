// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// WriteDirty brings an image that WriteTo or WriteDirty wrote to w up to
// date: it writes the header and each bucket changed since, with its
// checksum, at their offsets, runs of adjacent buckets in one write each.
// With nothing changed it writes nothing, so a periodic flush costs
// O(changed buckets). Buckets it could not write stay dirty. It returns
// the bytes written.
func (x *Index) WriteDirty(w io.WriterAt) (int64, error) {
	x.flushMu.Lock()
	defer x.flushMu.Unlock()
	r := &runWriter{x: x, w: w}
	for wi := range x.dirty {
		word := x.dirty[wi].Swap(0)
		for word != 0 {
			bit := uint64(bits.TrailingZeros64(word))
			word &^= 1 << bit
			if err := r.add(uint64(wi)*64 + bit); err != nil {
				x.dirty[wi].Or(word)
				return r.total, err
			}
		}
	}
	return r.total, r.flush()
}

// runWriter gathers adjacent dirty buckets into one write.
type runWriter struct {
	x            *Index
	w            io.WriterAt
	buf, sums    []byte
	start, count uint64
	total        int64
}

func (r *runWriter) add(bi uint64) error {
	if r.count > 0 && (bi != r.start+r.count || r.count == chunkBuckets) {
		if err := r.flush(); err != nil {
			r.x.markDirty(bi)
			return err
		}
	}
	if r.buf == nil {
		if err := r.write(r.x.header(), 0, "header"); err != nil {
			r.x.markDirty(bi)
			return err
		}
		r.buf = make([]byte, chunkBuckets*bucketBytes)
		r.sums = make([]byte, chunkBuckets*8)
	}
	if r.count == 0 {
		r.start = bi
	}
	sum := r.x.snapshot(bi, r.buf[r.count*bucketBytes:])
	binary.LittleEndian.PutUint64(r.sums[r.count*8:], sum)
	r.count++
	return nil
}

// flush writes the gathered run, or marks it dirty again.
func (r *runWriter) flush() error {
	if r.count == 0 {
		return nil
	}
	start, count := r.start, r.count
	r.count = 0
	size := r.x.Size()
	err := r.write(r.buf[:count*bucketBytes], headerBytes+start*bucketBytes, "buckets")
	if err == nil {
		err = r.write(r.sums[:count*8], headerBytes+size+start*8, "checksums")
	}
	if err != nil {
		for bi := start; bi < start+count; bi++ {
			r.x.markDirty(bi)
		}
		return fmt.Errorf("%w (buckets %d to %d)", err, start, start+count-1)
	}
	return nil
}

func (r *runWriter) write(p []byte, off uint64, part string) error {
	n, err := r.w.WriteAt(p, int64(off))
	r.total += int64(n)
	if err != nil {
		return fmt.Errorf("write index %s at %d: %w", part, off, err)
	}
	return nil
}

// clean forgets which buckets are dirty, once the whole index is written.
func (x *Index) clean() {
	for i := range x.dirty {
		x.dirty[i].Store(0)
	}
}
