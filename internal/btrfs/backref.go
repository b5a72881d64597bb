// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// InodeRef is one file extent item that references a data extent, as
// reported by LogicalInodes.
type InodeRef struct {
	// Inode is the file's inode number in subvolume Root (its st_ino).
	Inode uint64

	// Offset is the file offset at which the referencing item starts: the
	// Offset of the matching Extent, not adjusted by its ExtentOffset. The
	// item maps file bytes [Offset, Offset+Length) onto extent bytes
	// [ExtentOffset, ExtentOffset+Length).
	Offset uint64

	// Root is the id of the subvolume tree holding the item (5 for the
	// top-level subvolume).
	Root uint64
}

// Buffer sizes for LogicalInodes: the initial size holds 170 references,
// and the kernel uses at most 16 MiB.
const (
	logicalInoBufSize    = 4 << 10
	logicalInoBufMaxSize = 16 << 20
)

// LogicalInodes lists every file extent item that references the data
// extent containing the logical address bytenr, in all subvolumes
// (BTRFS_IOC_LOGICAL_INO_V2 with IGNORE_OFFSET). f can be any file on the
// filesystem. The result is sorted by root, inode and offset.
//
// What the kernel returns (fs/btrfs/backref.c, check_extent_in_eb and
// iterate_inodes_from_logical):
//   - bytenr may be any address inside the data extent; the kernel looks up
//     the extent that contains it. An address in no data extent fails with
//     ENOENT.
//   - There is one InodeRef per file extent item, per subvolume that can
//     reach the item: a file that references the extent from two ranges
//     (an extent split by a partial overwrite, say) appears twice, with the
//     two items' start offsets. Inline extents are never listed.
//   - Offset is the item's own start offset, whatever part of the extent
//     it maps. (Without IGNORE_OFFSET the kernel would instead return only
//     the uncompressed items covering bytenr, with the file offset of
//     bytenr itself.)
//
// The kernel finds the extent in the extent tree, where an extent written
// in the running transaction appears only at commit (until then: ENOENT),
// so call Sync first. New references to an existing extent (clones,
// dedupes) are listed at once. Needs CAP_SYS_ADMIN.
func LogicalInodes(f *os.File, bytenr uint64) ([]InodeRef, error) {
	return logicalRefs(f, bytenr, btrfsLogicalInoArgsIgnoreOffset)
}

// LogicalInodesAt is LogicalInodes without IGNORE_OFFSET: for an
// uncompressed extent it lists only the items that map the byte at the
// logical address addr, each with Offset the file offset of that byte.
// Items of a compressed extent (where addr must be the extent's start)
// are all listed, with their start offsets as in LogicalInodes: a
// compressed extent has no per-byte logical addresses.
func LogicalInodesAt(f *os.File, addr uint64) ([]InodeRef, error) {
	return logicalRefs(f, addr, 0)
}

func logicalRefs(f *os.File, bytenr, flags uint64) ([]InodeRef, error) {
	size := logicalInoBufSize
	for {
		refs, missing, err := logicalInodes(f, bytenr, flags, size)
		if err != nil {
			return nil, fmt.Errorf("list references to data extent at %d via %s (%d byte buffer): %w",
				bytenr, f.Name(), size, err)
		}
		if missing == 0 {
			slices.SortFunc(refs, func(a, b InodeRef) int {
				return cmp.Or(cmp.Compare(a.Root, b.Root), cmp.Compare(a.Inode, b.Inode),
					cmp.Compare(a.Offset, b.Offset))
			})
			return refs, nil
		}
		if size == logicalInoBufMaxSize {
			return nil, fmt.Errorf("list references to data extent at %d via %s: more than the kernel's %d byte limit: %w",
				bytenr, f.Name(), size, unix.EOVERFLOW)
		}
		// The kernel reports exactly how many bytes did not fit; new
		// references made meanwhile only cause another round.
		size = min(size+(missing+7)&^7, logicalInoBufMaxSize)
	}
}

// logicalInodes runs one LOGICAL_INO_V2 with a buffer of size bytes and
// returns the references that fit and how many bytes were missing.
func logicalInodes(f *os.File, bytenr, flags uint64, size int) ([]InodeRef, int, error) {
	buf := make([]uint64, size/8)
	if err := iocLogicalInoV2(f, bytenr, flags, buf); err != nil {
		return nil, 0, err
	}
	hdr := *(*btrfs_data_container)(unsafe.Pointer(&buf[0]))
	const hdrWords = int(unsafe.Sizeof(btrfs_data_container{}) / 8)
	n := int(hdr.elem_cnt)
	if n%3 != 0 || hdrWords+n > len(buf) {
		return nil, 0, fmt.Errorf("kernel returned %d values in a %d byte buffer, want triples that fit", n, size)
	}
	vals := buf[hdrWords : hdrWords+n]
	refs := make([]InodeRef, 0, n/3)
	for i := 0; i < n; i += 3 {
		refs = append(refs, InodeRef{Inode: vals[i], Offset: vals[i+1], Root: vals[i+2]})
	}
	missing := int(hdr.bytes_missing)
	if missing == 0 && hdr.elem_missed > 0 {
		missing = int(hdr.elem_missed) * 8
	}
	return refs, missing, nil
}

// extentItemBufSize fits an extent item with a few dozen inline back
// references; treeSearch grows it for larger ones.
const extentItemBufSize = 4 << 10

// ExtentRefCount returns the reference count of the data extent starting
// at the logical address bytenr (the refs field of its item in the extent
// tree). f can be any file on the filesystem. bytenr must be an extent's
// start, an Extent's DiskBytenr; anything else fails with ENOENT.
//
// The count is the number of file extent items that point at the extent,
// in every file and subvolume: a file that references it from two ranges
// counts twice. Comparing it with the items a caller knows about tells
// whether anything else holds the extent. Two limits:
//   - The count is updated when delayed references run, at the latest at
//     commit: right after a clone it can still show the old value, and an
//     extent written in the running transaction is not found (ENOENT).
//     Call Sync first.
//   - A snapshot copies only the subvolume's root block. A leaf below it,
//     shared by both trees, counts once until one of them rewrites it, so
//     after a snapshot the count can be lower than the number of files
//     that see the extent (LogicalInodes lists them all).
//
// Needs CAP_SYS_ADMIN.
func ExtentRefCount(f *os.File, bytenr uint64) (uint64, error) {
	errorf := func(format string, args ...any) error {
		return fmt.Errorf("count references to data extent at %d via %s: "+format,
			append([]any{bytenr, f.Name()}, args...)...)
	}
	key := btrfs_ioctl_search_key{
		tree_id:      btrfsExtentTreeObjectid,
		min_objectid: bytenr,
		max_objectid: bytenr,
		min_type:     btrfsExtentItemKey,
		max_type:     btrfsExtentItemKey,
		max_offset:   math.MaxUint64, // the key offset is the extent's length
		max_transid:  math.MaxUint64,
		nr_items:     1,
	}
	item, err := searchFirst(f, key, extentItemSize, fmt.Errorf("no data extent starts there: %w", unix.ENOENT))
	if err != nil {
		return 0, errorf("%w", err)
	}
	return binary.LittleEndian.Uint64(item[extentItemRefsOff:]), nil
}

// searchFirst returns the item of the first key matches, which must be of
// key's minimum objectid and type and at least minLen bytes long, or
// missing when there is none.
func searchFirst(f *os.File, key btrfs_ioctl_search_key, minLen int, missing error) ([]byte, error) {
	buf := newSearchBuf(extentItemBufSize)
	n, err := treeSearch(f, buf, &key)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, missing
	}
	h, item, err := firstSearchItem(buf.results())
	if err != nil {
		return nil, err
	}
	if h.objectid != key.min_objectid || h.typ != key.min_type || len(item) < minLen {
		return nil, fmt.Errorf("kernel returned item (%d, %d) of %d bytes", h.objectid, h.typ, len(item))
	}
	return item, nil
}

// firstSearchItem decodes the first (search header, item) pair of a tree
// search result.
func firstSearchItem(res []byte) (btrfs_ioctl_search_header, []byte, error) {
	const hdrSize = int(unsafe.Sizeof(btrfs_ioctl_search_header{}))
	if len(res) < hdrSize {
		return btrfs_ioctl_search_header{}, nil, fmt.Errorf("search result truncated")
	}
	h := decodeSearchHeader(res[:hdrSize])
	if hdrSize+int(h.len) > len(res) {
		return btrfs_ioctl_search_header{}, nil, fmt.Errorf("search item truncated")
	}
	return h, res[hdrSize : hdrSize+int(h.len)], nil
}
