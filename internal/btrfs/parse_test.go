// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// searchItem builds one (search header, item) pair as the kernel lays it
// out: header in host order, item little-endian as on disk.
func searchItem(objectid, offset uint64, typ uint32, item []byte) []byte {
	h := make([]byte, 32)
	binary.NativeEndian.PutUint64(h[8:], objectid)
	binary.NativeEndian.PutUint64(h[16:], offset)
	binary.NativeEndian.PutUint32(h[24:], typ)
	binary.NativeEndian.PutUint32(h[28:], uint32(len(item)))
	return append(h, item...)
}

func fileExtentItem(e Extent) []byte {
	b := make([]byte, fileExtentItemSize)
	le := binary.LittleEndian
	le.PutUint64(b[fileExtentGenerationOff:], e.Generation)
	le.PutUint64(b[fileExtentRAMBytesOff:], e.RAMBytes)
	b[fileExtentCompressionOff] = e.Compression
	b[fileExtentTypeOff] = e.Type
	le.PutUint64(b[fileExtentDiskBytenrOff:], e.DiskBytenr)
	le.PutUint64(b[fileExtentDiskNumBytesOff:], e.DiskNumBytes)
	le.PutUint64(b[fileExtentOffsetOff:], e.ExtentOffset)
	le.PutUint64(b[fileExtentNumBytesOff:], e.Length)
	return b
}

func inlineItem(gen uint64, data string) []byte {
	b := make([]byte, fileExtentInlineDataOff, fileExtentInlineDataOff+len(data))
	binary.LittleEndian.PutUint64(b[fileExtentGenerationOff:], gen)
	binary.LittleEndian.PutUint64(b[fileExtentRAMBytesOff:], uint64(len(data)))
	b[fileExtentTypeOff] = ExtentInline
	return append(b, data...)
}

func TestParseExtents(t *testing.T) {
	const ino = 257
	reg := Extent{Offset: 0, Length: 8192, DiskBytenr: 1 << 30, DiskNumBytes: 4096,
		ExtentOffset: 4096, RAMBytes: 131072, Generation: 9, Compression: CompressZstd, Type: ExtentRegular}
	old := Extent{Offset: 8192, Length: 4096, DiskBytenr: 2 << 30, DiskNumBytes: 4096,
		RAMBytes: 4096, Generation: 3, Type: ExtentRegular}
	prealloc := Extent{Offset: 12288, Length: 4096, DiskBytenr: 3 << 30, DiskNumBytes: 4096,
		RAMBytes: 4096, Generation: 7, Type: ExtentPrealloc}

	tests := []struct {
		name     string
		items    [][]byte
		minGen   uint64
		want     []Extent
		wantLast uint64
		wantErr  string
	}{
		{
			name: "generation filter and foreign items",
			items: [][]byte{
				searchItem(ino, 0, btrfsExtentDataKey, fileExtentItem(reg)),
				searchItem(ino, 8192, btrfsExtentDataKey, fileExtentItem(old)),
				searchItem(ino+1, 0, btrfsExtentDataKey, fileExtentItem(reg)),
				searchItem(ino, 12288, btrfsExtentDataKey, fileExtentItem(prealloc)),
			},
			minGen:   5,
			want:     []Extent{reg, prealloc},
			wantLast: 12288,
		},
		{
			name:     "inline",
			items:    [][]byte{searchItem(ino, 0, btrfsExtentDataKey, inlineItem(4, "hello"))},
			want:     []Extent{{Length: 5, RAMBytes: 5, Generation: 4, Type: ExtentInline}},
			wantLast: 0,
		},
		{
			name:    "short regular item",
			items:   [][]byte{searchItem(ino, 0, btrfsExtentDataKey, fileExtentItem(reg)[:40])},
			wantErr: "want 53",
		},
		{
			name:    "truncated buffer",
			items:   [][]byte{searchItem(ino, 0, btrfsExtentDataKey, fileExtentItem(reg))[:60]},
			wantErr: "truncated",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := slices.Concat(tt.items...)
			var got []Extent
			last, err := parseExtents(res, len(tt.items), ino, tt.minGen, &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseExtents error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) || last != tt.wantLast {
				t.Errorf("parseExtents = %+v, last %d; want %+v, last %d", got, last, tt.want, tt.wantLast)
			}
		})
	}
}

func TestNextDedupeBatch(t *testing.T) {
	many := make([]bool, 130)
	for i := range many {
		many[i] = true
	}
	first127 := make([]int, 127)
	for i := range first127 {
		first127[i] = i
	}
	tests := []struct {
		name    string
		deduped []uint64
		active  []bool
		want    []int
	}{
		{"none active", []uint64{0, 0}, []bool{false, false}, nil},
		{"all at start", []uint64{0, 0, 0}, []bool{true, true, true}, []int{0, 1, 2}},
		{"furthest behind first", []uint64{8, 4, 8, 4}, []bool{true, true, true, true}, []int{1, 3}},
		{"inactive behind is ignored", []uint64{0, 4, 4}, []bool{false, true, true}, []int{1, 2}},
		{"split at 127", make([]uint64, 130), many, first127},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextDedupeBatch(tt.deduped, tt.active); !slices.Equal(got, tt.want) {
				t.Errorf("nextDedupeBatch = %v, want %v", got, tt.want)
			}
		})
	}
}
