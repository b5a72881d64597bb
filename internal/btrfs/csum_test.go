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
