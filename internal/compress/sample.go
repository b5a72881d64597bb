// SPDX-License-Identifier: GPL-2.0-or-later

package compress

import (
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// sampleBytes is how much of an extent is compressed in userspace to
// judge it: btrfs compresses in 128 KiB units, so one unit tells.
const sampleBytes = 128 << 10

// DefaultMinSaving is the share of its bytes compression must save for
// data to be worth storing compressed. Rewriting data that does not
// compress only moves it, and a compressed extent costs on every read,
// which reads and decompresses it whole, up to 128 KiB for a 4 KiB read:
// at an eighth (16 KiB of a 128 KiB unit), the units that save little stay
// plain and cheap to read.
const DefaultMinSaving = 0.125

var sampler, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))

// worthCompressing reads a sample from the middle of pc and reports
// whether zstd shrinks it by minSaving to pay for rewriting the extent.
func worthCompressing(f *os.File, pc btrfs.Extent, minSaving float64) (bool, error) {
	n := min(pc.Length, sampleBytes)
	off := pc.Offset + (pc.Length-n)/2
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, int64(off)); err != nil {
		return false, fmt.Errorf("sample %s at %d: %w", f.Name(), off, err)
	}
	sampled, stored := SampleStored(buf, minSaving)
	return stored < sampled, nil
}

// SampleStored compresses the first sampleBytes of data, one unit as btrfs
// stores it, and returns the sample's length n and the bytes it would
// take on disk: its frame in whole sectors when that saves minSaving, else
// n, as it would be stored plainly.
func SampleStored(data []byte, minSaving float64) (n, stored int) {
	n = min(len(data), sampleBytes)
	frame := len(sampler.EncodeAll(data[:n], make([]byte, 0, n)))
	if SavesEnough(frame, n, minSaving) {
		return n, btrfs.StoredBytes(frame)
	}
	return n, n
}

// SavesEnough reports whether data of n bytes stored in stored bytes
// (rounded up to whole sectors) saves minSaving of them.
func SavesEnough(stored, n int, minSaving float64) bool {
	return float64(btrfs.StoredBytes(stored)) <= (1-minSaving)*float64(n)
}
