// SPDX-License-Identifier: GPL-2.0-or-later

package usage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// Row is the space taken by the extents of one type, or by all of them.
type Row struct {
	Type              string // see the package doc; "TOTAL" for the sum
	DiskBytes         uint64
	UncompressedBytes uint64
	ReferencedBytes   uint64
}

// Report is what Measure found.
type Report struct {
	Total Row

	// ByType has one row per type with any bytes, in compsize's order:
	// compression types by number (none, zlib, lzo, zstd, unknown ones),
	// then prealloc. compsize leaves out a row whose UncompressedBytes is
	// 0; that happens when an extent's first reference seen is of another
	// type (a prealloc extent partly written: the written part is "none").
	ByType []Row

	Files   uint64 // distinct regular files, empty ones included
	Extents uint64 // distinct data extents
	Refs    uint64 // references to them
	Inline  uint64 // inline extents

	// SharedDiskBytes and ExclusiveDiskBytes split Total.DiskBytes by
	// whether files outside the set also reference the extent. They rest
	// on btrfs.ExtentRefCount: exact as of the last transaction commit
	// (an extent written since then counts as exclusive), and after a
	// snapshot an extent whose leaf the snapshot still shares can count as
	// exclusive.
	SharedDiskBytes    uint64
	ExclusiveDiskBytes uint64
}

// Ratio is Total.DiskBytes / Total.UncompressedBytes, or 0 when nothing
// is stored.
func (r Report) Ratio() float64 {
	if r.Total.UncompressedBytes == 0 {
		return 0
	}
	return float64(r.Total.DiskBytes) / float64(r.Total.UncompressedBytes)
}

// typePrealloc is the row index of prealloc extents, past every possible
// compression byte.
const typePrealloc = 256

// typeName names a row index the way compsize does.
func typeName(typ int) string {
	switch typ {
	case btrfs.CompressNone:
		return "none"
	case btrfs.CompressZlib:
		return "zlib"
	case btrfs.CompressLZO:
		return "lzo"
	case btrfs.CompressZstd:
		return "zstd"
	case typePrealloc:
		return "prealloc"
	}
	return fmt.Sprintf("?%d", typ)
}

// Measure adds up the space taken by the regular files named in paths and
// by every regular file below the directories in paths, all on one btrfs
// filesystem (subvolumes included). Symbolic links and special files
// inside directories are skipped, as are entries deleted during the walk;
// paths themselves are followed if they are links.
//
// The numbers equal those of `compsize --bytes PATHS...` for the same
// files, with one difference: a file reached twice (named twice, or
// through a hard link) is measured once here, while compsize counts its
// references again. Data not yet written back has no extents and is not
// counted; call btrfs.Sync first for exact figures.
//
// No data is read: it costs a tree search per file (more for files with
// thousands of extents), one per distinct data extent for its reference
// count, and one per inline extent. Needs CAP_SYS_ADMIN.
func Measure(paths []string) (Report, error) {
	m := measurer{
		extents: make(map[uint64]*extentUse),
		files:   make(map[fileID]bool),
	}
	for _, p := range paths {
		if err := m.visit(p, true); err != nil {
			return Report{}, err
		}
	}
	return m.report(), nil
}

// Totals adds up open regular files as Measure does, without the
// reference count of each extent: it costs a tree search per file (more
// for files with thousands of extents) and one per inline extent, so that
// a whole pool can be measured after every job. Its Report has no split
// into shared and exclusive (both 0).
type Totals struct {
	m measurer
}

// NewTotals returns an empty set.
func NewTotals() *Totals {
	return &Totals{m: measurer{extents: make(map[uint64]*extentUse), files: make(map[fileID]bool), noRefCounts: true}}
}

// NewTotalsWithSharing returns an empty set that, unlike NewTotals, takes
// each extent's reference count as Measure does: its Report splits the
// disk bytes into shared and exclusive.
func NewTotalsWithSharing() *Totals {
	return &Totals{m: measurer{extents: make(map[uint64]*extentUse), files: make(map[fileID]bool)}}
}

// Add measures f, which must be a regular file on the same filesystem as
// the files added before it; a file added twice counts once.
func (t *Totals) Add(f *os.File) error {
	st, err := fstat(f)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("measure %s: mode %#o is not a regular file", f.Name(), st.Mode)
	}
	return t.m.file(f, st)
}

// Report sums up the files added so far.
func (t *Totals) Report() Report { return t.m.report() }

// extentUse is what the set knows about one data extent.
type extentUse struct {
	diskBytes uint64
	setRefs   uint64 // references found in the set
	allRefs   uint64 // the extent's reference count; 0 if not yet committed
}

type fileID struct{ dev, ino uint64 }

type measurer struct {
	rows    [typePrealloc + 1]Row
	extents map[uint64]*extentUse // by logical address
	files   map[fileID]bool
	fsid    [16]byte
	// noRefCounts skips the extents' reference counts, and so the split
	// into shared and exclusive.
	noRefCounts bool

	inline, refs, inlineDisk uint64
}

// visit measures a regular file or a directory tree. A path the caller
// named is followed if it is a link and must be a file or directory; an
// entry found by the walk is not followed, and one that vanished or is
// something else (it may have been replaced since it was listed) is
// skipped. Nothing is opened in blocking mode, since it could be a FIFO.
func (m *measurer) visit(name string, named bool) error {
	flag := os.O_RDONLY | unix.O_NONBLOCK
	if !named {
		flag |= unix.O_NOFOLLOW
	}
	f, err := os.OpenFile(name, flag, 0)
	if !named && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("measure %s: %w", name, err)
	}
	defer f.Close()
	st, err := fstat(f)
	if err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return m.dir(f)
	case unix.S_IFREG:
		return m.file(f, st)
	}
	if named {
		return fmt.Errorf("measure %s: mode %#o is neither a regular file nor a directory", name, st.Mode)
	}
	return nil
}

// dir measures the files below d, in directory order as compsize does:
// when two types reference one extent, the first reference seen decides
// its type.
func (m *measurer) dir(d *os.File) error {
	entries, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("measure %s: %w", d.Name(), err)
	}
	for _, e := range entries {
		if !e.IsDir() && !e.Type().IsRegular() {
			continue
		}
		if err := m.visit(filepath.Join(d.Name(), e.Name()), false); err != nil {
			return err
		}
	}
	return nil
}

// file adds the extents of one regular file.
func (m *measurer) file(f *os.File, st unix.Stat_t) error {
	id := fileID{st.Dev, st.Ino}
	if m.files[id] {
		return nil
	}
	fsid, err := btrfs.FilesystemID(f)
	if err != nil {
		return fmt.Errorf("measure %s: %w", f.Name(), err)
	}
	if len(m.files) == 0 {
		m.fsid = fsid
	} else if fsid != m.fsid {
		// Logical addresses of two filesystems are unrelated.
		return fmt.Errorf("measure %s: filesystem %x, not %x like the files before it: %w",
			f.Name(), fsid, m.fsid, unix.EXDEV)
	}
	m.files[id] = true
	ext, err := btrfs.Extents(f, 0)
	if err != nil {
		return fmt.Errorf("measure %s: %w", f.Name(), err)
	}
	for _, e := range ext {
		if err := m.add(f, e); err != nil {
			return fmt.Errorf("measure %s: %w", f.Name(), err)
		}
	}
	return nil
}

// add counts one file extent item of f.
func (m *measurer) add(f *os.File, e btrfs.Extent) error {
	if e.Type == btrfs.ExtentInline {
		// Inline data lives in the item itself: never shared with another
		// file, so it is neither deduplicated nor looked up.
		size, err := btrfs.InlineDataSize(f)
		if err != nil {
			return err
		}
		row := &m.rows[e.Compression]
		row.DiskBytes += size
		row.UncompressedBytes += e.RAMBytes
		row.ReferencedBytes += e.RAMBytes
		m.inline++
		m.inlineDisk += size
		return nil
	}
	if e.DiskBytenr == 0 {
		return nil // a hole
	}
	typ := int(e.Compression)
	if e.Type == btrfs.ExtentPrealloc {
		typ = typePrealloc
	}
	row := &m.rows[typ]
	use := m.extents[e.DiskBytenr]
	if use == nil {
		var all uint64
		if !m.noRefCounts {
			var err error
			all, err = btrfs.ExtentRefCount(f, e.DiskBytenr)
			// ENOENT: written after the last commit, so not in the extent
			// tree yet and of unknown count; it stays 0, meaning exclusive.
			if err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
		use = &extentUse{diskBytes: e.DiskNumBytes, allRefs: all}
		m.extents[e.DiskBytenr] = use
		row.DiskBytes += e.DiskNumBytes
		row.UncompressedBytes += e.RAMBytes
	}
	use.setRefs++
	row.ReferencedBytes += e.Length
	m.refs++
	return nil
}

// report sums up the rows and the sharing.
func (m *measurer) report() Report {
	r := Report{
		Total:              Row{Type: "TOTAL"},
		Files:              uint64(len(m.files)),
		Extents:            uint64(len(m.extents)),
		Refs:               m.refs,
		Inline:             m.inline,
		ExclusiveDiskBytes: m.inlineDisk,
	}
	for typ, row := range &m.rows {
		if row == (Row{}) {
			continue
		}
		row.Type = typeName(typ)
		r.ByType = append(r.ByType, row)
		r.Total.DiskBytes += row.DiskBytes
		r.Total.UncompressedBytes += row.UncompressedBytes
		r.Total.ReferencedBytes += row.ReferencedBytes
	}
	if m.noRefCounts {
		r.ExclusiveDiskBytes = 0
		return r
	}
	for _, use := range m.extents {
		if use.allRefs > use.setRefs {
			r.SharedDiskBytes += use.diskBytes
		} else {
			r.ExclusiveDiskBytes += use.diskBytes
		}
	}
	return r
}

func fstat(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(int(f.Fd()), &st)
	runtime.KeepAlive(f)
	if err != nil {
		return st, fmt.Errorf("fstat %s: %w", f.Name(), err)
	}
	return st, nil
}
