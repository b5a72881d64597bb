// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"reflect"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// byDiskExtent hands the dedup stage each data extent once, with every
// item of the file referencing it, in the order the file first meets it.
// Only extents holding data on disk count: inline items and holes have no
// disk extent; preallocated ones are kept, to be punched like zeros.
func TestByDiskExtent(t *testing.T) {
	reg := func(offset, length, bytenr uint64) btrfs.Extent {
		return btrfs.Extent{Offset: offset, Length: length, DiskBytenr: bytenr, DiskNumBytes: 128 << 10,
			RAMBytes: 128 << 10, Type: btrfs.ExtentRegular}
	}
	zstd := btrfs.Extent{Offset: 1 << 20, Length: 128 << 10, DiskBytenr: 9 << 20, DiskNumBytes: 8192,
		RAMBytes: 128 << 10, Compression: btrfs.CompressZstd, Type: btrfs.ExtentRegular}
	prealloc := btrfs.Extent{Offset: 2 << 20, Length: 64 << 10, DiskBytenr: 7 << 20, DiskNumBytes: 64 << 10,
		RAMBytes: 64 << 10, Type: btrfs.ExtentPrealloc}
	inline := btrfs.Extent{Offset: 0, Length: 100, RAMBytes: 100, Type: btrfs.ExtentInline}
	hole := btrfs.Extent{Offset: 4096, Length: 4096, Type: btrfs.ExtentRegular}
	a1, a2 := reg(0, 4096, 1<<20), reg(65536, 4096, 1<<20)
	a2.ExtentOffset = 8192
	b := reg(4096, 8192, 3<<20)
	tests := []struct {
		name string
		exts []btrfs.Extent
		want []dataExtent
	}{
		{"no items", nil, nil},
		{"inline only", []btrfs.Extent{inline}, nil},
		{"hole only", []btrfs.Extent{hole}, nil},
		{"one extent", []btrfs.Extent{b}, []dataExtent{{bytenr: 3 << 20, diskBytes: 128 << 10, items: []btrfs.Extent{b}}}},
		{"compressed", []btrfs.Extent{zstd}, []dataExtent{{bytenr: 9 << 20, diskBytes: 8192, compressed: true, items: []btrfs.Extent{zstd}}}},
		{"preallocated kept", []btrfs.Extent{prealloc}, []dataExtent{{bytenr: 7 << 20, diskBytes: 64 << 10, items: []btrfs.Extent{prealloc}}}},
		{
			name: "items of one extent grouped, in first-met order",
			exts: []btrfs.Extent{inline, a1, b, hole, a2},
			want: []dataExtent{
				{bytenr: 1 << 20, diskBytes: 128 << 10, items: []btrfs.Extent{a1, a2}},
				{bytenr: 3 << 20, diskBytes: 128 << 10, items: []btrfs.Extent{b}},
			},
		},
		{
			name: "extent met again after another",
			exts: []btrfs.Extent{b, a1, b},
			want: []dataExtent{
				{bytenr: 3 << 20, diskBytes: 128 << 10, items: []btrfs.Extent{b, b}},
				{bytenr: 1 << 20, diskBytes: 128 << 10, items: []btrfs.Extent{a1}},
			},
		},
		{
			name: "mixed kinds",
			exts: []btrfs.Extent{hole, zstd, prealloc, inline},
			want: []dataExtent{
				{bytenr: 9 << 20, diskBytes: 8192, compressed: true, items: []btrfs.Extent{zstd}},
				{bytenr: 7 << 20, diskBytes: 64 << 10, items: []btrfs.Extent{prealloc}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := byDiskExtent(tt.exts); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("byDiskExtent\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
