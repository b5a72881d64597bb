// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import "github.com/btrfs-vdo/btrfs-vdo/internal/compress"

// DefaultMinCompressSaving is the share of its bytes compression must save
// for the daemon to store data compressed (min_compress_saving): see
// compress.DefaultMinSaving. A rewrite cut short by a VM start also leaves
// the old extent pinned beside the new one. An eighth keeps nearly all the
// space a lower bar gives on VM images, whose data mostly saves far more
// or nothing.
const DefaultMinCompressSaving = compress.DefaultMinSaving

// sampleStored compresses a sample of data, its first 128 KiB, and
// returns the sample's length and the bytes it would take stored: see
// compress.SampleStored.
func (e *copyEncoder) sampleStored(data []byte) (n, stored int) {
	return compress.SampleStored(data, e.minSaving)
}

// savesEnough reports whether data of n bytes stored in stored bytes
// (rounded up to whole sectors) saves the encoder's minimum share.
func (e *copyEncoder) savesEnough(stored, n int) bool {
	return compress.SavesEnough(stored, n, e.minSaving)
}
