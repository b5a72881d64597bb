// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// segmentLen cuts a pass into segments of at most segmentBytes of new data,
// except that a segment always takes at least one extent, however large,
// so that every pass advances.
func TestSegmentLen(t *testing.T) {
	ext := func(lengths ...uint64) dataExtent {
		var de dataExtent
		var off uint64
		for _, n := range lengths {
			de.items = append(de.items, btrfs.Extent{Offset: off, Length: n})
			off += n
		}
		return de
	}
	tests := []struct {
		name    string
		segment uint64
		exts    []dataExtent
		want    int
	}{
		{"no extents", 100, nil, 0},
		{"one small extent", 100, []dataExtent{ext(10)}, 1},
		{"one extent above the bound", 100, []dataExtent{ext(1000)}, 1},
		{"first extent above the bound, more follow", 100, []dataExtent{ext(1000), ext(10)}, 1},
		{"all fit", 100, []dataExtent{ext(30), ext(30), ext(30)}, 3},
		{"exactly the bound", 100, []dataExtent{ext(50), ext(50)}, 2},
		{"one byte over the bound", 100, []dataExtent{ext(50), ext(51)}, 1},
		{"cut before the extent that crosses", 100, []dataExtent{ext(40), ext(40), ext(40), ext(10)}, 2},
		{"items of one extent add up", 100, []dataExtent{ext(10), ext(40, 40, 40)}, 1},
		{"items of one extent exactly at the bound", 100, []dataExtent{ext(20), ext(40, 40)}, 2},
		{"empty extents", 100, []dataExtent{ext(), ext(), ext(100), ext()}, 4},
		{"default bound: 1 GiB of 128 KiB extents", 1 << 30, repeat(ext(128<<10), 8193), 8192},
		{"default bound: extents of 1 GiB", 1 << 30, []dataExtent{ext(1 << 30), ext(1 << 30)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			SetSegmentBytes(t, tt.segment)
			if got := segmentLen(tt.exts); got != tt.want {
				t.Errorf("segmentLen of %d extents = %d, want %d", len(tt.exts), got, tt.want)
			}
		})
	}
}

func repeat(de dataExtent, n int) []dataExtent {
	out := make([]dataExtent, n)
	for i := range out {
		out[i] = de
	}
	return out
}
