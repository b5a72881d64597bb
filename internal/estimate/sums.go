// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"os"

	"github.com/cespare/xxhash/v2"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// A block's key is its data checksum as the filesystem stores it (the
// CRC-32C, or the first 8 bytes of a longer checksum), read from the
// checksum tree: a hash of every block of the pool without reading a byte
// of data. Equal blocks have equal keys; a few unequal ones do too, which
// verify measures.
type hasher struct {
	info btrfs.ChecksumInfo
	// zero is the key of a zero block, when the algorithm is one this
	// package can compute (all but BLAKE2b); known tells.
	zero  uint64
	known bool
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newHasher(info btrfs.ChecksumInfo) hasher {
	h := hasher{info: info}
	if info.SectorSize == blockSize {
		h.zero, h.known = h.compute(make([]byte, blockSize))
	}
	return h
}

// key decodes a stored checksum.
func (h hasher) key(sum []byte) uint64 {
	if len(sum) < 8 {
		return uint64(binary.LittleEndian.Uint32(sum))
	}
	return binary.LittleEndian.Uint64(sum)
}

// compute returns the key of a block read from the pool, as the
// filesystem computes it, when the algorithm is one this package has.
func (h hasher) compute(block []byte) (uint64, bool) {
	switch h.info.Type {
	case btrfs.ChecksumCRC32C:
		return uint64(crc32.Checksum(block, castagnoli)), true
	case btrfs.ChecksumXXHash64:
		return xxhash.Sum64(block), true
	case btrfs.ChecksumSHA256:
		sum := sha256.Sum256(block)
		return h.key(sum[:]), true
	}
	return 0, false
}

// target is a run of live blocks of an extent at logical address addr,
// whose checksums a sweep reports; id is the caller's.
type target struct {
	addr, length uint64
	ext          int
	eo           uint64 // offset into the extent
	id           int
}

// windowGap joins targets closer than this into one search: a search
// costs a tree descent, reading a few checksums between them costs less.
const windowGap = 16 << 20

// maxNodeSize is the largest btrfs tree node: no checksum item covers
// more sectors than one node holds checksums.
const maxNodeSize = 64 << 10

// sweep reads the checksums of every block of targets, which must be
// sorted by address and not overlap, and calls fn with each block's
// target, offset into the target, and key. It returns the number of
// blocks reported; it stops when ctx is done.
func sweep(ctx context.Context, f *os.File, h hasher, targets []target, fn func(t *target, off, key uint64)) (uint64, error) {
	// A window starts lookback early, for the item covering its first
	// block; windows at least that far apart never share an item.
	lookback := maxNodeSize / uint64(h.info.Size) * h.info.SectorSize
	gap := max(windowGap, lookback)
	var reported uint64
	for start := 0; start < len(targets); {
		end := start + 1
		hi := targets[start].addr + targets[start].length
		for end < len(targets) && targets[end].addr < hi+gap {
			hi = max(hi, targets[end].addr+targets[end].length)
			end++
		}
		lo := targets[start].addr - min(targets[start].addr, lookback)
		win, j := targets[start:end], 0
		err := btrfs.ChecksumItems(f, lo, hi, func(addr uint64, sums []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := uint64(len(sums) / h.info.Size)
			for i := uint64(0); i < n; i++ {
				a := addr + i*h.info.SectorSize
				for j < len(win) && win[j].addr+win[j].length <= a {
					j++
				}
				if j == len(win) {
					return nil
				}
				if t := &win[j]; a >= t.addr {
					size := uint64(h.info.Size)
					fn(t, a-t.addr, h.key(sums[i*size:(i+1)*size]))
					reported++
				} else {
					i += (t.addr-a)/h.info.SectorSize - 1 // skip to the target
				}
			}
			return nil
		})
		if err != nil {
			return reported, err
		}
		start = end
	}
	return reported, nil
}

// mix scrambles a key with the seed (splitmix64's finalizer), so that
// selecting keys by their mixed value picks contents at random, and a
// different seed picks others.
func mix(key, seed uint64) uint64 {
	z := key ^ (seed * 0x9e3779b97f4a7c15)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
