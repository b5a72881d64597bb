// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
)

// inPass keeps the pass from taking as a source any block of an extent it
// may still free: an address is in the pass when it falls in [start, end)
// of one of the pending extents, whether the address is a plain logical
// one or a compressed block's, whose block number sits in the top bits.
func TestInPass(t *testing.T) {
	const gib = 1 << 30
	spans := []diskSpan{
		{0, 4096},
		{gib, gib + 128<<10},
		{gib + 128<<10, gib + 256<<10}, // adjacent to the one before
		{4 * gib, 4*gib + 4096},
		{1<<dedupindex.BlockShift - 8192, 1<<dedupindex.BlockShift - 4096}, // the highest indexed addresses
	}
	compressed := func(bytenr, block uint64) uint64 { return bytenr | block<<dedupindex.BlockShift }
	tests := []struct {
		name  string
		spans []diskSpan
		addr  uint64
		want  bool
	}{
		{"no pending extents", nil, gib, false},
		{"no pending extents, address 0", nil, 0, false},
		{"address 0, start of the first", spans, 0, true},
		{"inside the first", spans, 4095, true},
		{"end of the first", spans, 4096, false},
		{"between extents", spans, 2 * gib, false},
		{"one below a start", spans, gib - 1, false},
		{"start of an extent", spans, gib, true},
		{"last byte of an extent", spans, gib + 128<<10 - 1, true},
		{"end of one, start of the adjacent", spans, gib + 128<<10, true},
		{"end of the adjacent", spans, gib + 256<<10, false},
		{"above every extent", spans, 5 * gib, false},
		{"in the highest extent", spans, 1<<dedupindex.BlockShift - 8192, true},
		{"end of the highest extent", spans, 1<<dedupindex.BlockShift - 4096, false},
		{"compressed block 0 of a pending extent", spans, compressed(4*gib, 0), true},
		{"compressed block 31 of a pending extent", spans, compressed(4*gib, 31), true},
		{"compressed block of another extent", spans, compressed(3*gib, 5), false},
		{"compressed block 63 of the extent at 0", spans, compressed(0, 63), true},
		{"single pending extent, inside", []diskSpan{{gib, 2 * gib}}, gib + 1, true},
		{"single pending extent, below", []diskSpan{{gib, 2 * gib}}, gib - 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &deduper{spans: tt.spans}
			if got := d.inPass(tt.addr); got != tt.want {
				t.Errorf("inPass(%#x) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// addSpan extends the last span when the new range continues it exactly,
// and starts a new one otherwise: the spans stay in the order they were
// met and are never merged across a gap.
func TestAddSpan(t *testing.T) {
	tests := []struct {
		name   string
		spans  []span
		off, n uint64
		want   []span
	}{
		{"first", nil, 4096, 4096, []span{{4096, 4096}}},
		{"first at 0", nil, 0, 4096, []span{{0, 4096}}},
		{"continues the last", []span{{0, 4096}}, 4096, 4096, []span{{0, 8192}}},
		{"continues the last, not the first", []span{{0, 4096}, {16384, 4096}}, 20480, 100, []span{{0, 4096}, {16384, 4196}}},
		{"continues an earlier span only", []span{{0, 4096}, {16384, 4096}}, 4096, 4096, []span{{0, 4096}, {16384, 4096}, {4096, 4096}}},
		{"gap", []span{{0, 4096}}, 8192, 4096, []span{{0, 4096}, {8192, 4096}}},
		{"gap of one byte", []span{{0, 4096}}, 4097, 4096, []span{{0, 4096}, {4097, 4096}}},
		{"overlaps the last", []span{{0, 8192}}, 4096, 8192, []span{{0, 8192}, {4096, 8192}}},
		{"same range again", []span{{0, 4096}}, 0, 4096, []span{{0, 4096}, {0, 4096}}},
		{"empty range continuing", []span{{0, 4096}}, 4096, 0, []span{{0, 4096}}},
		{"high offsets", []span{{1<<63 - 8192, 4096}}, 1<<63 - 4096, 4096, []span{{1<<63 - 8192, 8192}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := addSpan(slices.Clone(tt.spans), tt.off, tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("addSpan(%v, %d, %d) = %v, want %v", tt.spans, tt.off, tt.n, got, tt.want)
			}
		})
	}
}
