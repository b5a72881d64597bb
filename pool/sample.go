// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// sampleBytes is how much of an extent is compressed in userspace to
// judge it: btrfs compresses in 128 KiB units, so one unit tells.
const sampleBytes = 128 << 10

// worthRatio is the largest compressed/original ratio worth a rewrite.
// Rewriting data that does not compress only moves it, and a rewrite cut
// short by a VM start leaves the old extent pinned beside the new one.
const worthRatio = 0.9

var sampler, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))

// worthCompressing reads a sample from the middle of pc and reports
// whether zstd shrinks it enough to pay for rewriting the extent.
func worthCompressing(f *os.File, pc btrfs.Extent) (bool, error) {
	n := min(pc.Length, sampleBytes)
	off := pc.Offset + (pc.Length-n)/2
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, int64(off)); err != nil {
		return false, fmt.Errorf("sample %s at %d: %w", f.Name(), off, err)
	}
	return sampleShrinks(buf), nil
}

// sampleShrinks reports whether zstd shrinks the first sampleBytes of
// data enough to pay for rewriting it.
func sampleShrinks(data []byte) bool {
	n := min(len(data), sampleBytes)
	out := sampler.EncodeAll(data[:n], make([]byte, 0, n))
	return float64(len(out)) <= worthRatio*float64(n)
}
