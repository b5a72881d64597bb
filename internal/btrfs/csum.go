// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Data checksum algorithms (btrfs_csum_type).
const (
	ChecksumCRC32C   = 0
	ChecksumXXHash64 = 1
	ChecksumSHA256   = 2
	ChecksumBLAKE2b  = 3
)

// ChecksumInfo describes the data checksums of a filesystem: one checksum
// of Size bytes per SectorSize bytes of every data extent's on-disk bytes
// (for a compressed extent, of the compressed bytes).
type ChecksumInfo struct {
	Type       int // ChecksumCRC32C, ...
	Size       int
	SectorSize uint64
}

// Checksums returns the data checksum algorithm of the filesystem holding
// f (BTRFS_IOC_FS_INFO, Linux 5.5+).
func Checksums(f *os.File) (ChecksumInfo, error) {
	args := btrfs_ioctl_fs_info_args{flags: btrfsFsInfoFlagCsumInfo}
	if err := iocFsInfo(f, &args); err != nil {
		return ChecksumInfo{}, fmt.Errorf("read checksum type of %s: %w", f.Name(), err)
	}
	if args.flags&btrfsFsInfoFlagCsumInfo == 0 || args.csum_size == 0 || args.sectorsize == 0 {
		return ChecksumInfo{}, fmt.Errorf("read checksum type of %s: kernel does not report it: %w", f.Name(), unix.EOPNOTSUPP)
	}
	return ChecksumInfo{Type: int(args.csum_type), Size: int(args.csum_size), SectorSize: uint64(args.sectorsize)}, nil
}

// ChecksumItems calls fn, in address order, for every data checksum item
// of the filesystem holding f whose first sector's logical address lies in
// [lo, hi): addr is that address and sums the item's checksums, one per
// sector from addr on (see ChecksumInfo). An item can cover sectors past
// hi, and an item starting before lo can cover lo: a caller wanting every
// checksum of a range starts lo early enough (an item never covers more
// than a tree node holds). sums is valid only during the call; an error
// from fn stops the walk and is returned. Only reads; needs CAP_SYS_ADMIN.
func ChecksumItems(f *os.File, lo, hi uint64, fn func(addr uint64, sums []byte) error) error {
	key := btrfs_ioctl_search_key{
		tree_id:      btrfsCsumTreeObjectid,
		min_objectid: btrfsExtentCsumObjectid,
		max_objectid: btrfsExtentCsumObjectid,
		min_type:     btrfsExtentCsumKey,
		max_type:     btrfsExtentCsumKey,
		min_offset:   lo,
		max_offset:   hi - 1,
	}
	err := walkItems(f, key, lo, hi, func(h btrfs_ioctl_search_header, item []byte) error {
		if h.objectid != btrfsExtentCsumObjectid || h.typ != btrfsExtentCsumKey || h.offset < lo || h.offset >= hi {
			return nil
		}
		return fn(h.offset, item)
	})
	if err != nil {
		return fmt.Errorf("list data checksums in [%d, %d) via %s: %w", lo, hi, f.Name(), err)
	}
	return nil
}

// ExtentRefCounts calls fn, in address order, with the logical address
// and reference count (see ExtentRefCount) of every data extent of the
// filesystem holding f that starts in [lo, hi): one walk of the extent
// tree instead of a search per extent. An error from fn stops the walk
// and is returned. Only reads; needs CAP_SYS_ADMIN.
func ExtentRefCounts(f *os.File, lo, hi uint64, fn func(bytenr, refs uint64) error) error {
	key := btrfs_ioctl_search_key{
		tree_id:      btrfsExtentTreeObjectid,
		min_objectid: lo,
		max_objectid: hi - 1,
		min_type:     btrfsExtentItemKey,
		max_type:     btrfsExtentItemKey,
		max_offset:   math.MaxUint64,
	}
	err := walkItems(f, key, lo, hi, func(h btrfs_ioctl_search_header, item []byte) error {
		// Keys are compared whole: back reference and metadata items
		// between lo and hi come too.
		if h.typ != btrfsExtentItemKey || h.objectid < lo || h.objectid >= hi || len(item) < extentItemSize {
			return nil
		}
		return fn(h.objectid, binary.LittleEndian.Uint64(item[extentItemRefsOff:]))
	})
	if err != nil {
		return fmt.Errorf("count references to data extents in [%d, %d) via %s: %w", lo, hi, f.Name(), err)
	}
	return nil
}

// walkItems runs tree searches from key on, calling fn with every item
// returned, until the keys pass the range's end. key.min_objectid or
// key.min_offset, whichever the range is on, moves past each batch.
func walkItems(f *os.File, key btrfs_ioctl_search_key, lo, hi uint64, fn func(btrfs_ioctl_search_header, []byte) error) error {
	if lo >= hi {
		return nil
	}
	key.max_transid = math.MaxUint64
	buf := newSearchBuf(searchBufSize)
	const hdrSize = int(unsafe.Sizeof(btrfs_ioctl_search_header{}))
	for {
		key.nr_items = math.MaxUint32
		n, err := treeSearch(f, buf, &key)
		if err != nil || n == 0 {
			return err
		}
		res, pos := buf.results(), 0
		var last btrfs_ioctl_search_header
		for i := range n {
			if pos+hdrSize > len(res) || pos+hdrSize+int(decodeSearchHeader(res[pos:pos+hdrSize]).len) > len(res) {
				return fmt.Errorf("search result %d of %d truncated", i, n)
			}
			last = decodeSearchHeader(res[pos : pos+hdrSize])
			pos += hdrSize
			item := res[pos : pos+int(last.len)]
			pos += int(last.len)
			if err := fn(last, item); err != nil {
				return err
			}
		}
		if !nextKey(&key, last) {
			return nil
		}
	}
}

// nextKey moves key's minimum just past the last item returned, or
// reports false when nothing can follow it.
func nextKey(key *btrfs_ioctl_search_key, last btrfs_ioctl_search_header) bool {
	switch {
	case last.offset < math.MaxUint64:
		key.min_objectid, key.min_type, key.min_offset = last.objectid, last.typ, last.offset+1
	case last.typ < math.MaxUint8:
		key.min_objectid, key.min_type, key.min_offset = last.objectid, last.typ+1, 0
	case last.objectid < math.MaxUint64:
		key.min_objectid, key.min_type, key.min_offset = last.objectid+1, 0, 0
	default:
		return false
	}
	return key.min_objectid <= key.max_objectid
}
