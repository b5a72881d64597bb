// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
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
	if lo >= hi {
		return nil
	}
	key := btrfs_ioctl_search_key{
		tree_id:      btrfsCsumTreeObjectid,
		min_objectid: btrfsExtentCsumObjectid,
		max_objectid: btrfsExtentCsumObjectid,
		min_type:     btrfsExtentCsumKey,
		max_type:     btrfsExtentCsumKey,
		min_offset:   lo,
		max_offset:   hi - 1,
		max_transid:  math.MaxUint64,
	}
	buf := newSearchBuf(searchBufSize)
	const hdrSize = int(unsafe.Sizeof(btrfs_ioctl_search_header{}))
	for {
		key.nr_items = math.MaxUint32
		n, err := treeSearch(f, buf, &key)
		if err != nil {
			return fmt.Errorf("list data checksums in [%d, %d) via %s: %w", key.min_offset, hi, f.Name(), err)
		}
		if n == 0 {
			return nil
		}
		res, pos, last := buf.results(), 0, uint64(0)
		for i := range n {
			if pos+hdrSize > len(res) {
				return fmt.Errorf("list data checksums via %s: search result %d of %d truncated", f.Name(), i, n)
			}
			h := decodeSearchHeader(res[pos : pos+hdrSize])
			pos += hdrSize
			if pos+int(h.len) > len(res) {
				return fmt.Errorf("list data checksums via %s: search item %d of %d truncated", f.Name(), i, n)
			}
			item := res[pos : pos+int(h.len)]
			pos += int(h.len)
			last = h.offset
			if h.objectid != btrfsExtentCsumObjectid || h.typ != btrfsExtentCsumKey || h.offset < lo || h.offset >= hi {
				continue
			}
			if err := fn(h.offset, item); err != nil {
				return err
			}
		}
		if last >= hi-1 {
			return nil
		}
		key.min_offset = last + 1
	}
}
