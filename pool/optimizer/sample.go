// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

var sampler, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))

// worthCompressing reads a sample from the middle of pc and reports
// whether zstd shrinks it enough to pay for rewriting the extent.
func (e *copyEncoder) worthCompressing(f *os.File, pc btrfs.Extent) (bool, error) {
	n := min(pc.Length, sampleBytes)
	off := pc.Offset + (pc.Length-n)/2
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, int64(off)); err != nil {
		return false, fmt.Errorf("sample %s at %d: %w", f.Name(), off, err)
	}
	return e.sampleShrinks(buf), nil
}

// sampleShrinks reports whether zstd shrinks the first sampleBytes of
// data enough to pay for rewriting it.
func (e *copyEncoder) sampleShrinks(data []byte) bool {
	n := min(len(data), sampleBytes)
	out := sampler.EncodeAll(data[:n], make([]byte, 0, n))
	return e.savesEnough(len(out), n)
}

// savesEnough reports whether data of n bytes stored in stored bytes
// (rounded up to whole sectors) saves the encoder's minimum share. Without
// an encoder (CompressFiles makes no copies) the bar is the default.
func (e *copyEncoder) savesEnough(stored, n int) bool {
	bar := DefaultMinCompressSaving
	if e != nil {
		bar = e.minSaving
	}
	sectors := (stored + blockSize - 1) / blockSize * blockSize
	return float64(sectors) <= (1-bar)*float64(n)
}
