// SPDX-License-Identifier: GPL-2.0-or-later

//go:build linux && (386 || amd64 || arm || arm64 || loong64 || riscv64 || s390x)

// The ioctl numbers below use the generic _IOC encoding
// (dir<<30 | size<<16 | type<<8 | nr). powerpc, mips and sparc encode the
// direction differently, so the build stops there instead of issuing the
// wrong ioctl.

package btrfs

import (
	"encoding/binary"
	"unsafe"
)

// Raw kernel interface, mirroring include/uapi/linux/btrfs.h and
// btrfs_tree.h. Type and field names keep the kernel's spelling so they can
// be checked against the header line by line; size_test.go pins every size
// and offset.

const btrfsIoctlMagic = 0x94

// Ioctl request numbers not provided by golang.org/x/sys/unix.
const (
	btrfsIocSync         = 0x00009408 // _IO(0x94, 8)
	btrfsIocDefragRange  = 0x40309410 // _IOW(0x94, 16, struct btrfs_ioctl_defrag_range_args)
	btrfsIocInoLookup    = 0xD0009412 // _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)
	btrfsIocTreeSearchV2 = 0xC0709411 // _IOWR(0x94, 17, struct btrfs_ioctl_search_args_v2)
	btrfsIocWaitSync     = 0x40089416 // _IOW(0x94, 22, __u64)
	btrfsIocStartSync    = 0x80089418 // _IOR(0x94, 24, __u64)
	btrfsIocFsInfo       = 0x8400941F // _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)
	btrfsIocLogicalInoV2 = 0xC038943B // _IOWR(0x94, 59, struct btrfs_ioctl_logical_ino_args)
	// _IOW(0x94, 64, struct btrfs_ioctl_encoded_io_args): the struct holds a
	// pointer and an unsigned long, so its size, and the number, follow the
	// word size (128 bytes on 64-bit).
	btrfsIocEncodedWrite = 1<<30 | uintptr(unsafe.Sizeof(btrfs_ioctl_encoded_io_args{}))<<16 | btrfsIoctlMagic<<8 | 64
)

// FS_IOC_FIEMAP (linux/fs.h), _IOWR('f', 11, struct fiemap), and its
// fm_flags bit asking for writeback first (linux/fiemap.h).
const (
	fsIocFiemap    = 0xC020660B
	fiemapFlagSync = 1 << 0
)

// btrfs_ioctl_encoded_io_args.compression: one zstd frame whose window is
// at most 128 KiB (windowLog 17).
const btrfsEncodedIOCompressionZstd = 2

// btrfs_ioctl_logical_ino_args.flags (V2 only): return every reference to
// the data extent instead of only those covering the given address.
const btrfsLogicalInoArgsIgnoreOffset = 1 << 0

// btrfs_ioctl_defrag_range_args.flags.
const (
	btrfsDefragRangeCompress      = 1 << 0
	btrfsDefragRangeStartIO       = 1 << 1
	btrfsDefragRangeCompressLevel = 1 << 2 // kernel 6.15+: use compress_type as {type u8, level s8}
)

// btrfs_ioctl_fs_info_args.flags.
const (
	btrfsFsInfoFlagCsumInfo     = 1 << 0
	btrfsFsInfoFlagGeneration   = 1 << 1
	btrfsFsInfoFlagMetadataUUID = 1 << 2
)

// Item key types and tree ids (btrfs_tree.h).
const (
	btrfsExtentDataKey      = 108 // file extent item, in a subvolume tree
	btrfsExtentItemKey      = 168 // data extent item, keyed (bytenr, 168, length)
	btrfsExtentTreeObjectid = 2
	btrfsCsumTreeObjectid   = 7
	btrfsExtentCsumObjectid = 1<<64 - 10 // -10ULL: the objectid of every data checksum item
	btrfsExtentCsumKey      = 128        // data checksums, keyed by the logical address of their first sector
)

// btrfsFirstFreeObjectid is a subvolume's root directory's inode number.
const btrfsFirstFreeObjectid = 256

// struct btrfs_ioctl_ino_lookup_args (4096 bytes).
type btrfs_ioctl_ino_lookup_args struct {
	treeid   uint64
	objectid uint64
	name     [4080]byte
}

// struct btrfs_ioctl_defrag_range_args (48 bytes).
type btrfs_ioctl_defrag_range_args struct {
	start         uint64
	len           uint64
	flags         uint64
	extent_thresh uint32
	// compress_type is a union with struct { u8 type; s8 level; } when
	// flags has btrfsDefragRangeCompressLevel; see setCompress.
	compress_type uint32
	unused        [4]uint32
}

// setCompress fills the compress_type union. With a level it writes the
// {type, level} byte pair in memory order, which the kernel reads as
// compress.type and compress.level regardless of endianness.
func (a *btrfs_ioctl_defrag_range_args) setCompress(typ uint8, level int8, withLevel bool) {
	if !withLevel {
		a.compress_type = uint32(typ)
		return
	}
	a.compress_type = binary.NativeEndian.Uint32([]byte{typ, byte(level), 0, 0})
}

// struct btrfs_ioctl_encoded_io_args (128 bytes on 64-bit).
type btrfs_ioctl_encoded_io_args struct {
	iov              uintptr // const struct iovec *
	iovcnt           uintptr // unsigned long
	offset           int64
	flags            uint64
	len              uint64
	unencoded_len    uint64
	unencoded_offset uint64
	compression      uint32
	encryption       uint32
	reserved         [64]uint8
}

// struct btrfs_ioctl_search_key (104 bytes).
type btrfs_ioctl_search_key struct {
	tree_id      uint64
	min_objectid uint64
	max_objectid uint64
	min_offset   uint64
	max_offset   uint64
	min_transid  uint64 // filters on the transid of the leaf, not of the item
	max_transid  uint64
	min_type     uint32
	max_type     uint32
	nr_items     uint32 // in: maximum wanted, out: number returned
	unused       uint32
	unused1      uint64
	unused2      uint64
	unused3      uint64
	unused4      uint64
}

// struct btrfs_ioctl_search_args_v2 without its flexible buf[] tail
// (112 bytes); the result buffer follows it directly in memory.
type btrfs_ioctl_search_args_v2 struct {
	key      btrfs_ioctl_search_key
	buf_size uint64 // in: size of buf, out on EOVERFLOW: size needed
}

// struct btrfs_ioctl_search_header (32 bytes), written by the kernel in
// host byte order before each item in the result buffer.
type btrfs_ioctl_search_header struct {
	transid  uint64
	objectid uint64
	offset   uint64
	typ      uint32 // "type" in the kernel
	len      uint32
}

// struct btrfs_ioctl_fs_info_args (1024 bytes).
type btrfs_ioctl_fs_info_args struct {
	max_id          uint64
	num_devices     uint64
	fsid            [16]uint8
	nodesize        uint32
	sectorsize      uint32
	clone_alignment uint32
	csum_type       uint16
	csum_size       uint16
	flags           uint64 // in: which optional fields to fill; out: which were
	generation      uint64
	metadata_uuid   [16]uint8
	reserved        [944]uint8
}

// struct fiemap without its fm_extents[] tail (32 bytes).
type fiemap struct {
	fm_start          uint64
	fm_length         uint64
	fm_flags          uint32
	fm_mapped_extents uint32
	fm_extent_count   uint32 // room in fm_extents[]; 0: only count them
	fm_reserved       uint32
}

// struct btrfs_ioctl_logical_ino_args (56 bytes).
type btrfs_ioctl_logical_ino_args struct {
	logical  uint64
	size     uint64 // size of the buffer at inodes; the kernel uses at most 16 MiB
	reserved [3]uint64
	flags    uint64
	inodes   uint64 // user address of a struct btrfs_data_container
}

// struct btrfs_data_container without its val[] tail (16 bytes), filled by
// the kernel in host byte order. val[] follows as elem_cnt u64 values.
type btrfs_data_container struct {
	bytes_left    uint32
	bytes_missing uint32 // how much larger the buffer must be to hold everything
	elem_cnt      uint32 // u64 values in val[]
	elem_missed   uint32 // u64 values that did not fit
}

// struct btrfs_extent_item (24 bytes, on disk, little-endian): the head of
// a data extent's item in the extent tree; inline back references follow.
const (
	extentItemRefsOff = 0
	extentItemSize    = 24
)

// struct btrfs_file_extent_item is packed and stored little-endian on disk;
// the search ioctl copies it out as is, so it is decoded by offset rather
// than through a Go struct.
const (
	fileExtentGenerationOff    = 0
	fileExtentRAMBytesOff      = 8
	fileExtentCompressionOff   = 16
	fileExtentEncryptionOff    = 17
	fileExtentOtherEncodingOff = 18
	fileExtentTypeOff          = 20
	fileExtentInlineDataOff    = 21 // inline extents: data starts here
	fileExtentDiskBytenrOff    = 21
	fileExtentDiskNumBytesOff  = 29
	fileExtentOffsetOff        = 37
	fileExtentNumBytesOff      = 45
	fileExtentItemSize         = 53
)
