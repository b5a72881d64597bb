// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Extent types (btrfs_file_extent_item.type).
const (
	ExtentInline   = 0 // data stored inside the metadata item
	ExtentRegular  = 1 // data in a data extent, or a hole when DiskBytenr is 0
	ExtentPrealloc = 2 // allocated by fallocate, never written: reads as zeros
)

// Compression algorithms (btrfs_file_extent_item.compression and the defrag
// compress_type).
const (
	CompressNone = 0
	CompressZlib = 1
	CompressLZO  = 2
	CompressZstd = 3
)

// Extent is one file extent item: the mapping of a range of a file onto
// (part of) a data extent.
type Extent struct {
	// Offset and Length are the file range [Offset, Offset+Length) this
	// item maps: the item's key offset and num_bytes. For inline extents
	// Length is ram_bytes.
	Offset, Length uint64

	// DiskBytenr is the logical address of the data extent, identical in
	// every file that shares it; 0 for a hole and for inline extents.
	// DiskNumBytes is the data extent's size on disk (compressed size).
	DiskBytenr, DiskNumBytes uint64

	// ExtentOffset is where this file range starts inside the uncompressed
	// data extent; nonzero when the item references only part of it.
	ExtentOffset uint64

	// RAMBytes is the uncompressed size of the whole data extent.
	RAMBytes uint64

	// Generation is the transaction that wrote the data extent. Clone and
	// dedupe copy it along with the item.
	Generation uint64

	Compression uint8 // CompressNone, CompressZlib, ...
	Type        uint8 // ExtentInline, ExtentRegular or ExtentPrealloc
}

// IsHole reports whether e is an explicit hole item (filesystems with the
// no-holes feature, the default, store no items for holes at all).
func (e Extent) IsHole() bool {
	return e.Type == ExtentRegular && e.DiskBytenr == 0
}

// Search buffer sizes. The kernel caps buf_size at 16 MiB.
const (
	searchBufSize    = 64 << 10
	searchBufMaxSize = 16 << 20
)

// Extents lists the file extent items of f whose generation is at least
// minGeneration, in file order. With minGeneration 0 it lists every extent
// of the file; with a value from Generation taken earlier it lists exactly
// the data written (or rewritten) since then.
//
// Dirty data that has not been written back yet has no extent item; call
// WriteBack, Sync or f.Sync first. Needs CAP_SYS_ADMIN.
func Extents(f *os.File, minGeneration uint64) ([]Extent, error) {
	return extentsFrom(f, 0, math.MaxUint64, minGeneration)
}

// ExtentsStartingIn lists f's file extent items that start at file
// offsets lo to hi (both included), in file order.
func ExtentsStartingIn(f *os.File, lo, hi uint64) ([]Extent, error) {
	return extentsFrom(f, lo, hi, 0)
}

func extentsFrom(f *os.File, lo, hi, minGeneration uint64) ([]Extent, error) {
	ino, err := inodeNumber(f)
	if err != nil {
		return nil, err
	}
	key := fileExtentsKey(ino, lo, hi)
	key.min_transid = minGeneration
	buf := newSearchBuf(searchBufSize)
	var out []Extent
	for {
		key.nr_items = math.MaxUint32
		n, err := treeSearch(f, buf, &key)
		if err != nil {
			return nil, fmt.Errorf("list extents of %s (inode %d) from offset %d, generation >= %d: %w",
				f.Name(), ino, key.min_offset, minGeneration, err)
		}
		if n == 0 {
			return out, nil
		}
		last, err := parseExtents(buf.results(), n, ino, minGeneration, &out)
		if err != nil {
			return nil, fmt.Errorf("list extents of %s (inode %d): %w", f.Name(), ino, err)
		}
		// With objectid and type fixed, keys differ only in offset, so the
		// next batch starts just past the last item returned.
		if last >= hi {
			return out, nil
		}
		key.min_offset = last + 1
	}
}

// ExtentAt returns f's file extent item that starts at file offset off
// (an Offset LogicalInodes reported), or an error wrapping fs.ErrNotExist
// when no item starts there.
func ExtentAt(f *os.File, off uint64) (Extent, error) {
	ino, err := inodeNumber(f)
	if err != nil {
		return Extent{}, err
	}
	key := fileExtentsKey(ino, off, off)
	key.nr_items = 1
	item, err := searchFirst(f, key, fileExtentInlineDataOff, fmt.Errorf("no extent item starts there: %w", fs.ErrNotExist))
	if err != nil {
		return Extent{}, fmt.Errorf("read extent item of %s (inode %d) at offset %d: %w", f.Name(), ino, off, err)
	}
	return parseFileExtentItem(off, item)
}

// fileExtentsKey searches the file extent items of inode ino, in the
// subvolume of the file searched through, that start in [lo, hi].
func fileExtentsKey(ino, lo, hi uint64) btrfs_ioctl_search_key {
	return btrfs_ioctl_search_key{
		tree_id:      0, // the subvolume of the file searched through
		min_objectid: ino,
		max_objectid: ino,
		min_type:     btrfsExtentDataKey,
		max_type:     btrfsExtentDataKey,
		min_offset:   lo,
		max_offset:   hi,
		max_transid:  math.MaxUint64,
		nr_items:     math.MaxUint32,
	}
}

// treeSearch runs one search with key, growing buf when a single item does
// not fit, and returns the number of items in buf.
func treeSearch(f *os.File, buf *searchBuf, key *btrfs_ioctl_search_key) (int, error) {
	for {
		args := buf.args()
		args.key = *key
		size := uint64(len(buf.results()))
		args.buf_size = size
		err := iocTreeSearchV2(f, buf)
		if errors.Is(err, unix.EOVERFLOW) {
			// The kernel reports the size the next item needs.
			need := max(args.buf_size, 2*size)
			if need > searchBufMaxSize {
				return 0, fmt.Errorf("item needs a %d byte buffer: %w", args.buf_size, err)
			}
			*buf = *newSearchBuf(int(need))
			continue
		}
		if err != nil {
			return 0, err
		}
		return int(args.key.nr_items), nil
	}
}

// parseExtents decodes n (search header, item) pairs from res, appending
// the file extent items of inode ino with generation >= minGen to out. It
// returns the key offset of the last item seen.
func parseExtents(res []byte, n int, ino, minGen uint64, out *[]Extent) (last uint64, err error) {
	const hdrSize = int(unsafe.Sizeof(btrfs_ioctl_search_header{}))
	pos := 0
	for i := range n {
		if pos+hdrSize > len(res) {
			return 0, fmt.Errorf("search result %d of %d truncated", i, n)
		}
		h := decodeSearchHeader(res[pos : pos+hdrSize])
		pos += hdrSize
		if pos+int(h.len) > len(res) {
			return 0, fmt.Errorf("search item %d of %d truncated", i, n)
		}
		item := res[pos : pos+int(h.len)]
		pos += int(h.len)
		last = h.offset
		if h.objectid != ino || h.typ != btrfsExtentDataKey {
			continue
		}
		e, err := parseFileExtentItem(h.offset, item)
		if err != nil {
			return 0, err
		}
		// The search filtered on leaf generations only; a leaf rewritten for
		// any reason returns all its older items too.
		if e.Generation >= minGen {
			*out = append(*out, e)
		}
	}
	return last, nil
}

// decodeSearchHeader reads a search header, which may be unaligned in the
// result buffer, field by field at the struct's offsets.
func decodeSearchHeader(b []byte) btrfs_ioctl_search_header {
	var h btrfs_ioctl_search_header
	ne := binary.NativeEndian
	h.transid = ne.Uint64(b[unsafe.Offsetof(h.transid):])
	h.objectid = ne.Uint64(b[unsafe.Offsetof(h.objectid):])
	h.offset = ne.Uint64(b[unsafe.Offsetof(h.offset):])
	h.typ = ne.Uint32(b[unsafe.Offsetof(h.typ):])
	h.len = ne.Uint32(b[unsafe.Offsetof(h.len):])
	return h
}

// parseFileExtentItem decodes a btrfs_file_extent_item (little-endian on
// disk) found at file offset off.
func parseFileExtentItem(off uint64, item []byte) (Extent, error) {
	le := binary.LittleEndian
	if len(item) < fileExtentInlineDataOff {
		return Extent{}, fmt.Errorf("file extent item at offset %d: %d bytes, want at least %d",
			off, len(item), fileExtentInlineDataOff)
	}
	e := Extent{
		Offset:      off,
		Generation:  le.Uint64(item[fileExtentGenerationOff:]),
		RAMBytes:    le.Uint64(item[fileExtentRAMBytesOff:]),
		Compression: item[fileExtentCompressionOff],
		Type:        item[fileExtentTypeOff],
	}
	if e.Type == ExtentInline {
		// The data follows the header in place of the disk fields.
		e.Length = e.RAMBytes
		return e, nil
	}
	if len(item) < fileExtentItemSize {
		return Extent{}, fmt.Errorf("file extent item at offset %d: %d bytes, want %d",
			off, len(item), fileExtentItemSize)
	}
	e.DiskBytenr = le.Uint64(item[fileExtentDiskBytenrOff:])
	e.DiskNumBytes = le.Uint64(item[fileExtentDiskNumBytesOff:])
	e.ExtentOffset = le.Uint64(item[fileExtentOffsetOff:])
	e.Length = le.Uint64(item[fileExtentNumBytesOff:])
	return e, nil
}

// inodeNumber returns f's inode number, which is its btrfs objectid.
func inodeNumber(f *os.File) (uint64, error) {
	var st unix.Stat_t
	err := unix.Fstat(int(f.Fd()), &st)
	runtime.KeepAlive(f)
	if err != nil {
		return 0, fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	return st.Ino, nil
}
