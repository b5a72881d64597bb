// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"encoding/binary"
	"hash/crc32"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// The checksum tree holds, for every sector of an uncompressed extent, the
// CRC-32C of its bytes (the default algorithm), stored little-endian.
func TestChecksumItemsMatchData(t *testing.T) {
	mnt := btrfstest.Mount(t, 0)
	data := append(randomData(3*mib, 7), textData(mib, 3)...)
	f := create(t, filepath.Join(mnt, "f"), data)
	info, err := btrfs.Checksums(f)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != btrfs.ChecksumCRC32C || info.Size != 4 || info.SectorSize != 4096 {
		t.Fatalf("checksum info %+v, want crc32c, 4 bytes per 4096", info)
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	checked := 0
	for _, e := range extents(t, f, 0) {
		lo := e.DiskBytenr + e.ExtentOffset
		sums := map[uint64]uint32{}
		err := btrfs.ChecksumItems(f, e.DiskBytenr, e.DiskBytenr+e.DiskNumBytes, func(addr uint64, b []byte) error {
			for i := 0; i+4 <= len(b); i += 4 {
				sums[addr+uint64(i/4)*4096] = binary.LittleEndian.Uint32(b[i:])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for off := uint64(0); off < e.Length; off += 4096 {
			want := crc32.Checksum(data[e.Offset+off:e.Offset+off+4096], table)
			if got, ok := sums[lo+off]; !ok || got != want {
				t.Fatalf("sector at %d: checksum %08x (found %v), want %08x", lo+off, got, ok, want)
			}
			checked++
		}
	}
	if checked != len(data)/4096 {
		t.Fatalf("checked %d sectors, want %d", checked, len(data)/4096)
	}
}

// One walk of the extent tree finds the counts a search per extent finds.
func TestExtentRefCountsMatchExtentRefCount(t *testing.T) {
	mnt := btrfstest.Mount(t, 0)
	f := create(t, filepath.Join(mnt, "f"), randomData(4*mib, 3))
	writeAt(t, f, textData(64*kib, 4), int64(mib))
	btrfstest.Reflink(t, filepath.Join(mnt, "f"), filepath.Join(mnt, "g"))
	if err := btrfs.Sync(f); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]uint64{}
	lo, hi := uint64(1<<63), uint64(0)
	for _, e := range extents(t, f, 0) {
		n, err := btrfs.ExtentRefCount(f, e.DiskBytenr)
		if err != nil {
			t.Fatal(err)
		}
		want[e.DiskBytenr] = n
		lo, hi = min(lo, e.DiskBytenr), max(hi, e.DiskBytenr+1)
	}
	got := map[uint64]uint64{}
	err := btrfs.ExtentRefCounts(f, lo, hi, func(bytenr, refs uint64) error {
		got[bytenr] = refs
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for bytenr, n := range want {
		if got[bytenr] != n || n < 2 {
			t.Errorf("extent at %d: walk counts %d, search %d (want at least 2: f and g)", bytenr, got[bytenr], n)
		}
	}
	if len(want) < 2 {
		t.Errorf("%d extents, want the overwrite to split the file", len(want))
	}
}
