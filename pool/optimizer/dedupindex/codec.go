// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// ErrCorrupt means serialized index data is torn, truncated or not an
// index of this version. The index is only a hint, so the caller starts a
// fresh one.
var ErrCorrupt = errors.New("corrupt dedup index")

// Serialized layout, all integers little-endian:
//
//	0             header, one 4 KiB block: magic [8]byte, version uint32,
//	              bucket bytes uint32, size uint64, nbuckets uint64, then
//	              the xxhash of those 32 bytes
//	4096          the table, bucket after bucket, each 4 KiB-aligned: its
//	              256 hashes, then its 256 address words
//	4096 + size   one xxhash per bucket, of its 4 KiB
//
// The checksums come last so that WriteTo can stream a consistent image,
// one bucket under its lock at a time, without holding every lock at once.
const (
	magic       = "bvdo-dix"
	version     = 1
	headerBytes = 4096
	// chunkBuckets is how many buckets one write carries: 1 MiB, few
	// syscalls, little memory.
	chunkBuckets = 256
)

// encodedLen returns the serialized length of an index of size bytes.
func encodedLen(size uint64) int64 {
	return int64(headerBytes + size + size/bucketBytes*8)
}

func (x *Index) header() []byte {
	h := make([]byte, headerBytes)
	copy(h, magic)
	binary.LittleEndian.PutUint32(h[8:], version)
	binary.LittleEndian.PutUint32(h[12:], bucketBytes)
	binary.LittleEndian.PutUint64(h[16:], x.Size())
	binary.LittleEndian.PutUint64(h[24:], x.nbuckets)
	binary.LittleEndian.PutUint64(h[32:], xxhash.Sum64(h[:32]))
	return h
}

// parseHeader returns the table size a header describes.
func parseHeader(h []byte) (uint64, error) {
	switch {
	case string(h[:8]) != magic:
		return 0, fmt.Errorf("%w: bad magic %q", ErrCorrupt, h[:8])
	case binary.LittleEndian.Uint64(h[32:]) != xxhash.Sum64(h[:32]):
		return 0, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	case binary.LittleEndian.Uint32(h[8:]) != version:
		return 0, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, binary.LittleEndian.Uint32(h[8:]), version)
	}
	bsize := binary.LittleEndian.Uint32(h[12:])
	size := binary.LittleEndian.Uint64(h[16:])
	nbuckets := binary.LittleEndian.Uint64(h[24:])
	if bsize != bucketBytes || size == 0 || size%bucketBytes != 0 || size/bucketBytes != nbuckets {
		return 0, fmt.Errorf("%w: bad geometry: bucket %d, size %d, %d buckets", ErrCorrupt, bsize, size, nbuckets)
	}
	return size, nil
}

// snapshot copies bucket bi into dst under its lock and returns the
// copy's checksum.
func (x *Index) snapshot(bi uint64, dst []byte) uint64 {
	s := &x.stripes[bi&x.stripeMask]
	s.mu.Lock()
	copy(dst, x.bucket(bi))
	s.mu.Unlock()
	return xxhash.Sum64(dst[:bucketBytes])
}

// WriteTo writes the whole index to w. Each bucket is consistent; buckets
// changed during the call may appear before or after the change. Dirty
// buckets stay dirty.
func (x *Index) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(x.header())
	total := int64(n)
	if err != nil {
		return total, fmt.Errorf("write index header: %w", err)
	}
	sums := make([]byte, x.nbuckets*8)
	buf := make([]byte, chunkBuckets*bucketBytes)
	for start := uint64(0); start < x.nbuckets; start += chunkBuckets {
		count := min(chunkBuckets, x.nbuckets-start)
		for j := range count {
			sum := x.snapshot(start+j, buf[j*bucketBytes:])
			binary.LittleEndian.PutUint64(sums[(start+j)*8:], sum)
		}
		n, err := w.Write(buf[:count*bucketBytes])
		total += int64(n)
		if err != nil {
			return total, fmt.Errorf("write index buckets from %d: %w", start, err)
		}
	}
	n, err = w.Write(sums)
	total += int64(n)
	if err != nil {
		return total, fmt.Errorf("write index checksums: %w", err)
	}
	return total, nil
}

// tableBytesIn returns the size of the table an encoding of n bytes
// holds, 0 if none fits.
func tableBytesIn(n int64) uint64 {
	if n < headerBytes {
		return 0
	}
	return uint64(n-headerBytes) / (bucketBytes + 8) * bucketBytes
}

// ReadFrom reads an index written by WriteTo (or kept up to date by
// WriteDirty) whose table is at most limit bytes. Torn, truncated or
// foreign data, and a header claiming a larger table, yield an error
// wrapping ErrCorrupt; any other error is r's. The header is checked
// against limit before anything is allocated for the table: a header is
// read from disk, and its size must not decide the daemon's memory.
func ReadFrom(r io.Reader, limit uint64) (*Index, error) {
	h := make([]byte, headerBytes)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, readError("header", err)
	}
	size, err := parseHeader(h)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("%w: a table of %d bytes, over the %d allowed", ErrCorrupt, size, limit)
	}
	x, err := New(size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if _, err := io.ReadFull(r, x.table); err != nil {
		return nil, readError("buckets", err)
	}
	sums := make([]byte, x.nbuckets*8)
	if _, err := io.ReadFull(r, sums); err != nil {
		return nil, readError("checksums", err)
	}
	for bi := range x.nbuckets {
		b := x.bucket(bi)
		if xxhash.Sum64(b) != binary.LittleEndian.Uint64(sums[bi*8:]) {
			return nil, fmt.Errorf("%w: bucket %d: checksum mismatch", ErrCorrupt, bi)
		}
		n, err := b.check(bi, x.nbuckets)
		if err != nil {
			return nil, fmt.Errorf("%w: bucket %d: %w", ErrCorrupt, bi, err)
		}
		x.stripes[bi&x.stripeMask].used.Add(uint64(n))
	}
	return x, nil
}

// readError turns running out of data into ErrCorrupt.
func readError(part string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated in the %s", ErrCorrupt, part)
	}
	return fmt.Errorf("read index %s: %w", part, err)
}
