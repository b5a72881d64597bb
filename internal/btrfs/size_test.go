// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sizes and offsets from include/uapi/linux/btrfs.h, linux/fs.h and
// linux/fiemap.h (amd64; the structs have only fixed-size fields and no
// implicit padding, so the numbers hold on every architecture this
// package builds for).
func TestStructSizes(t *testing.T) {
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"btrfs_ioctl_defrag_range_args", unsafe.Sizeof(btrfs_ioctl_defrag_range_args{}), 48},
		{"btrfs_ioctl_ino_lookup_args", unsafe.Sizeof(btrfs_ioctl_ino_lookup_args{}), 4096},
		{"btrfs_ioctl_search_key", unsafe.Sizeof(btrfs_ioctl_search_key{}), 104},
		{"btrfs_ioctl_search_args_v2 header", unsafe.Sizeof(btrfs_ioctl_search_args_v2{}), 112},
		{"btrfs_ioctl_search_header", unsafe.Sizeof(btrfs_ioctl_search_header{}), 32},
		{"btrfs_ioctl_fs_info_args", unsafe.Sizeof(btrfs_ioctl_fs_info_args{}), 1024},
		{"btrfs_ioctl_logical_ino_args", unsafe.Sizeof(btrfs_ioctl_logical_ino_args{}), 56},
		{"btrfs_data_container header", unsafe.Sizeof(btrfs_data_container{}), 16},
		{"fiemap header", unsafe.Sizeof(fiemap{}), 32},
		// A pointer and an unsigned long, then fixed-size fields.
		{"btrfs_ioctl_encoded_io_args", unsafe.Sizeof(btrfs_ioctl_encoded_io_args{}), 2*unsafe.Sizeof(uintptr(0)) + 112},
		// Declared by x/sys; the dedupe batch size depends on them.
		{"file_dedupe_range", unix.SizeofRawFileDedupeRange, 24},
		{"file_dedupe_range_info", unix.SizeofRawFileDedupeRangeInfo, 32},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("sizeof(%s) = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}

func TestFieldOffsets(t *testing.T) {
	var d btrfs_ioctl_defrag_range_args
	var k btrfs_ioctl_search_key
	var s btrfs_ioctl_search_args_v2
	var h btrfs_ioctl_search_header
	var fi btrfs_ioctl_fs_info_args
	var li btrfs_ioctl_logical_ino_args
	var dc btrfs_data_container
	var ea btrfs_ioctl_encoded_io_args
	var fm fiemap
	word := unsafe.Sizeof(uintptr(0))
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"defrag.start", unsafe.Offsetof(d.start), 0},
		{"defrag.len", unsafe.Offsetof(d.len), 8},
		{"defrag.flags", unsafe.Offsetof(d.flags), 16},
		{"defrag.extent_thresh", unsafe.Offsetof(d.extent_thresh), 24},
		{"defrag.compress_type", unsafe.Offsetof(d.compress_type), 28},
		{"defrag.unused", unsafe.Offsetof(d.unused), 32},
		{"search_key.min_transid", unsafe.Offsetof(k.min_transid), 40},
		{"search_key.max_transid", unsafe.Offsetof(k.max_transid), 48},
		{"search_key.min_type", unsafe.Offsetof(k.min_type), 56},
		{"search_key.max_type", unsafe.Offsetof(k.max_type), 60},
		{"search_key.nr_items", unsafe.Offsetof(k.nr_items), 64},
		{"search_key.unused1", unsafe.Offsetof(k.unused1), 72},
		{"search_args_v2.buf_size", unsafe.Offsetof(s.buf_size), 104},
		{"search_header.offset", unsafe.Offsetof(h.offset), 16},
		{"search_header.type", unsafe.Offsetof(h.typ), 24},
		{"search_header.len", unsafe.Offsetof(h.len), 28},
		{"fs_info.fsid", unsafe.Offsetof(fi.fsid), 16},
		{"fs_info.nodesize", unsafe.Offsetof(fi.nodesize), 32},
		{"fs_info.clone_alignment", unsafe.Offsetof(fi.clone_alignment), 40},
		{"fs_info.csum_type", unsafe.Offsetof(fi.csum_type), 44},
		{"fs_info.flags", unsafe.Offsetof(fi.flags), 48},
		{"fs_info.generation", unsafe.Offsetof(fi.generation), 56},
		{"fs_info.metadata_uuid", unsafe.Offsetof(fi.metadata_uuid), 64},
		{"fs_info.reserved", unsafe.Offsetof(fi.reserved), 80},
		{"logical_ino.size", unsafe.Offsetof(li.size), 8},
		{"logical_ino.reserved", unsafe.Offsetof(li.reserved), 16},
		{"logical_ino.flags", unsafe.Offsetof(li.flags), 40},
		{"logical_ino.inodes", unsafe.Offsetof(li.inodes), 48},
		{"data_container.bytes_missing", unsafe.Offsetof(dc.bytes_missing), 4},
		{"data_container.elem_cnt", unsafe.Offsetof(dc.elem_cnt), 8},
		{"data_container.elem_missed", unsafe.Offsetof(dc.elem_missed), 12},
		{"encoded_io.offset", unsafe.Offsetof(ea.offset), 2 * word},
		{"encoded_io.unencoded_offset", unsafe.Offsetof(ea.unencoded_offset), 2*word + 32},
		{"encoded_io.compression", unsafe.Offsetof(ea.compression), 2*word + 40},
		{"encoded_io.encryption", unsafe.Offsetof(ea.encryption), 2*word + 44},
		{"encoded_io.reserved", unsafe.Offsetof(ea.reserved), 2*word + 48},
		{"fiemap.fm_flags", unsafe.Offsetof(fm.fm_flags), 16},
		{"fiemap.fm_extent_count", unsafe.Offsetof(fm.fm_extent_count), 24},
		// btrfs_extent_item is decoded by hand (on-disk).
		{"extent_item.refs", extentItemRefsOff, 0},
		{"sizeof(extent_item)", extentItemSize, 24},
		// btrfs_file_extent_item is decoded by hand (packed, on-disk).
		{"file_extent_item.ram_bytes", fileExtentRAMBytesOff, 8},
		{"file_extent_item.compression", fileExtentCompressionOff, 16},
		{"file_extent_item.encryption", fileExtentEncryptionOff, 17},
		{"file_extent_item.other_encoding", fileExtentOtherEncodingOff, 18},
		{"file_extent_item.type", fileExtentTypeOff, 20},
		{"file_extent_item.disk_bytenr", fileExtentDiskBytenrOff, 21},
		{"file_extent_item.disk_num_bytes", fileExtentDiskNumBytesOff, 29},
		{"file_extent_item.offset", fileExtentOffsetOff, 37},
		{"file_extent_item.num_bytes", fileExtentNumBytesOff, 45},
		{"sizeof(file_extent_item)", fileExtentItemSize, 53},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("offset of %s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}

// TestIoctlNumbers recomputes each hand-written request number from the
// _IOC encoding and the Go struct size, so a struct of the wrong size and a
// mistyped number both show up.
func TestIoctlNumbers(t *testing.T) {
	const (
		none  = 0
		write = 1
		read  = 2
	)
	ioc := func(dir, nr, size uintptr) uintptr {
		return dir<<30 | size<<16 | btrfsIoctlMagic<<8 | nr
	}
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"BTRFS_IOC_SYNC", btrfsIocSync, ioc(none, 8, 0)},
		{"BTRFS_IOC_DEFRAG_RANGE", btrfsIocDefragRange,
			ioc(write, 16, unsafe.Sizeof(btrfs_ioctl_defrag_range_args{}))},
		{"BTRFS_IOC_TREE_SEARCH_V2", btrfsIocTreeSearchV2,
			ioc(read|write, 17, unsafe.Sizeof(btrfs_ioctl_search_args_v2{}))},
		{"BTRFS_IOC_WAIT_SYNC", btrfsIocWaitSync, ioc(write, 22, 8)},
		{"BTRFS_IOC_START_SYNC", btrfsIocStartSync, ioc(read, 24, 8)},
		{"BTRFS_IOC_FS_INFO", btrfsIocFsInfo,
			ioc(read, 31, unsafe.Sizeof(btrfs_ioctl_fs_info_args{}))},
		{"BTRFS_IOC_LOGICAL_INO_V2", btrfsIocLogicalInoV2,
			ioc(read|write, 59, unsafe.Sizeof(btrfs_ioctl_logical_ino_args{}))},
		{"BTRFS_IOC_ENCODED_WRITE", btrfsIocEncodedWrite,
			ioc(write, 64, unsafe.Sizeof(btrfs_ioctl_encoded_io_args{}))},
		{"FS_IOC_FIEMAP", fsIocFiemap,
			(read|write)<<30 | unsafe.Sizeof(fiemap{})<<16 | 'f'<<8 | 11},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
	if unsafe.Sizeof(uintptr(0)) == 8 && btrfsIocEncodedWrite != 0x40809440 {
		t.Errorf("BTRFS_IOC_ENCODED_WRITE = %#x on 64-bit, want 0x40809440", btrfsIocEncodedWrite)
	}
	if maxDedupeDests != 127 {
		t.Errorf("maxDedupeDests = %d, want 127", maxDedupeDests)
	}
}

// The compress union is {u8 type; s8 level} in memory order when the
// level flag is set, and a plain u32 otherwise.
func TestDefragSetCompress(t *testing.T) {
	tests := []struct {
		name      string
		typ       uint8
		level     int8
		withLevel bool
		want      [4]byte
	}{
		{"plain", CompressZstd, 0, false, [4]byte{}},
		{"level 5", CompressZstd, 5, true, [4]byte{3, 5, 0, 0}},
		{"negative level", CompressZstd, -3, true, [4]byte{3, 0xfd, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a btrfs_ioctl_defrag_range_args
			a.setCompress(tt.typ, tt.level, tt.withLevel)
			got := *(*[4]byte)(unsafe.Pointer(&a.compress_type))
			want := tt.want
			if !tt.withLevel {
				binary.NativeEndian.PutUint32(want[:], uint32(tt.typ))
			}
			if got != want {
				t.Errorf("compress bytes = %v, want %v", got, want)
			}
		})
	}
}

// Flag and key values from the uapi headers (btrfs.h, btrfs_tree.h).
func TestUapiConstants(t *testing.T) {
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"BTRFS_FS_INFO_FLAG_CSUM_INFO", btrfsFsInfoFlagCsumInfo, 1 << 0},
		{"BTRFS_FS_INFO_FLAG_GENERATION", btrfsFsInfoFlagGeneration, 1 << 1},
		{"BTRFS_FS_INFO_FLAG_METADATA_UUID", btrfsFsInfoFlagMetadataUUID, 1 << 2},
		{"BTRFS_DEFRAG_RANGE_COMPRESS", btrfsDefragRangeCompress, 1},
		{"BTRFS_DEFRAG_RANGE_START_IO", btrfsDefragRangeStartIO, 2},
		{"BTRFS_DEFRAG_RANGE_COMPRESS_LEVEL", btrfsDefragRangeCompressLevel, 4},
		{"BTRFS_EXTENT_DATA_KEY", btrfsExtentDataKey, 108},
		{"BTRFS_EXTENT_ITEM_KEY", btrfsExtentItemKey, 168},
		{"BTRFS_EXTENT_TREE_OBJECTID", btrfsExtentTreeObjectid, 2},
		{"BTRFS_CSUM_TREE_OBJECTID", btrfsCsumTreeObjectid, 7},
		{"BTRFS_EXTENT_CSUM_OBJECTID", btrfsExtentCsumObjectid, 0xfffffffffffffff6},
		{"BTRFS_EXTENT_CSUM_KEY", btrfsExtentCsumKey, 128},
		{"BTRFS_LOGICAL_INO_ARGS_IGNORE_OFFSET", btrfsLogicalInoArgsIgnoreOffset, 1},
		{"FIEMAP_FLAG_SYNC", fiemapFlagSync, 1},
		{"BTRFS_COMPRESS_ZSTD", CompressZstd, 3},
		{"BTRFS_FILE_EXTENT_PREALLOC", ExtentPrealloc, 2},
		{"FS_COMPR_FL", FlagCompress, 0x4},
		{"FS_NOCOMP_FL", FlagNoCompress, 0x400},
		{"FS_NOCOW_FL", FlagNoCOW, 0x800000},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}
