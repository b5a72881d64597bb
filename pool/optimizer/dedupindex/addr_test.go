// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import "testing"

// BlockAddr names every indexable block by one address: an uncompressed
// block by its logical address, a compressed one by its extent's address
// with the block's number in the top bits. Blocks at or above 1<<BlockShift
// have none, since their address would collide with a compressed block's.
func TestBlockAddr(t *testing.T) {
	const top = 1 << BlockShift
	tests := []struct {
		name       string
		bytenr     uint64
		compressed bool
		eo         uint64
		want       uint64
		wantOK     bool
	}{
		{"uncompressed, extent start", 1 << 30, false, 0, 1 << 30, true},
		{"uncompressed, into the extent", 1 << 30, false, 12288, 1<<30 + 12288, true},
		{"uncompressed, unaligned offset", 1 << 30, false, 100, 1<<30 + 100, true},
		{"uncompressed, address 0", 0, false, 0, 0, true},
		{"uncompressed, highest address", top - 4096, false, 4095, top - 1, true},
		{"uncompressed, first address too high", top - 4096, false, 4096, 0, false},
		{"uncompressed, extent too high", top, false, 0, 0, false},
		{"compressed, block 0", 1 << 30, true, 0, 1 << 30, true},
		{"compressed, inside block 0", 1 << 30, true, 4095, 1 << 30, true},
		{"compressed, block 1", 1 << 30, true, 4096, 1<<30 | 1<<BlockShift, true},
		{"compressed, inside block 1", 1 << 30, true, 8191, 1<<30 | 1<<BlockShift, true},
		{"compressed, block 31 (last of 128 KiB)", 1 << 30, true, 31 * 4096, 1<<30 | 31<<BlockShift, true},
		{"compressed, extent too high", top, true, 0, 0, false},
		{"compressed, highest extent", top - 1<<20, true, 4096, top - 1<<20 | 1<<BlockShift, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := BlockAddr(tt.bytenr, tt.compressed, tt.eo)
			if ok != tt.wantOK || (ok && got != tt.want) {
				t.Errorf("BlockAddr(%#x, %v, %d) = %#x, %v; want %#x, %v",
					tt.bytenr, tt.compressed, tt.eo, got, ok, tt.want, tt.wantOK)
			}
			if base, block := SplitAddr(got); ok && (base != tt.bytenr+tt.eo*boolInt(!tt.compressed) || block != tt.eo/BlockSize*boolInt(tt.compressed)) {
				t.Errorf("SplitAddr(%#x) = %#x, %d", got, base, block)
			}
		})
	}
}

func boolInt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
