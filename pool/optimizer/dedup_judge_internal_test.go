// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"math/rand/v2"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// An extent is judged compressible on samples of all its pieces, weighed
// by their lengths: single blocks say nothing, and a compressible piece
// carries the extent only when it saves the minimum share of all of it.
func TestExtentJudgedOnAllItsPieces(t *testing.T) {
	text := func(n int) []byte { return btrfstest.Text("judge", n) }
	noise := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
		return b
	}
	const kib = 1024
	for _, tc := range []struct {
		name   string
		pieces [][]byte
		want   bool
	}{
		{"single blocks of text", [][]byte{text(4 * kib), text(4 * kib)}, false},
		{"a block, then text", [][]byte{text(4 * kib), text(512 * kib)}, true},
		{"noise, then text", [][]byte{noise(512 * kib), text(512 * kib)}, true},
		{"noise, then a little text", [][]byte{noise(512 * kib), text(64 * kib)}, false},
		{"noise", [][]byte{noise(512 * kib), noise(512 * kib)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := newCopyEncoder(0, 0, 1, func(error) {})
			var pl extentPlan
			for _, data := range tc.pieces {
				pl.judge(enc, data)
			}
			if got := pl.compressible(enc); got != tc.want {
				t.Errorf("compressible = %v (sampled %d bytes, %d stored), want %v", got, pl.sampled, pl.sampledStored, tc.want)
			}
		})
	}
}
