// SPDX-License-Identifier: GPL-2.0-or-later

package compress

import (
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// contiguous turns the rewritten pieces of a work item into as few file
// ranges as cover them, in file order, whatever order the pieces came in.
func TestContiguous(t *testing.T) {
	x := func(offset, length uint64) btrfs.Extent { return btrfs.Extent{Offset: offset, Length: length} }
	tests := []struct {
		name   string
		pieces []btrfs.Extent
		want   []btrfs.Extent
	}{
		{"none", nil, nil},
		{"one", []btrfs.Extent{x(4096, 8192)}, []btrfs.Extent{x(4096, 8192)}},
		{"adjacent", []btrfs.Extent{x(0, 4096), x(4096, 4096), x(8192, 4096)}, []btrfs.Extent{x(0, 12288)}},
		{"adjacent, out of order", []btrfs.Extent{x(8192, 4096), x(0, 4096), x(4096, 4096)}, []btrfs.Extent{x(0, 12288)}},
		{"gap", []btrfs.Extent{x(0, 4096), x(8192, 4096)}, []btrfs.Extent{x(0, 4096), x(8192, 4096)}},
		{"gap of one byte", []btrfs.Extent{x(0, 4096), x(4097, 4096)}, []btrfs.Extent{x(0, 4096), x(4097, 4096)}},
		{"two runs, out of order", []btrfs.Extent{x(1<<20, 4096), x(4096, 4096), x(1<<20+4096, 4096), x(0, 4096)},
			[]btrfs.Extent{x(0, 8192), x(1<<20, 8192)}},
		{"overlapping pieces stay apart", []btrfs.Extent{x(0, 8192), x(4096, 8192)}, []btrfs.Extent{x(0, 8192), x(4096, 8192)}},
		{"empty piece in a run", []btrfs.Extent{x(0, 4096), x(4096, 0), x(4096, 4096)}, []btrfs.Extent{x(0, 8192)}},
		{"end of the largest file", []btrfs.Extent{x(1<<63-8192, 4096), x(1<<63-4096, 4096)}, []btrfs.Extent{x(1<<63-8192, 8192)}},
		{
			name: "only the file range is kept",
			pieces: []btrfs.Extent{
				{Offset: 0, Length: 4096, DiskBytenr: 1 << 30, DiskNumBytes: 4096, Generation: 7},
				{Offset: 4096, Length: 4096, DiskBytenr: 1 << 31, DiskNumBytes: 4096, Generation: 8},
			},
			want: []btrfs.Extent{x(0, 8192)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.pieces)
			if got := contiguous(tt.pieces); !slices.Equal(got, tt.want) {
				t.Errorf("contiguous(%v)\n got %v\nwant %v", tt.pieces, got, tt.want)
			}
			if !slices.Equal(in, tt.pieces) {
				t.Errorf("contiguous changed its argument: %v, was %v", tt.pieces, in)
			}
		})
	}
}
