package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// maxCompressedRAM is the most uncompressed data one compressed extent
// holds (btrfs compresses in chunks of 128 KiB).
const maxCompressedRAM = 128 << 10

// Index addresses. A block's address is its data extent's disk_bytenr plus
// the block's offset into the extent's uncompressed data. For an
// uncompressed extent that is the block's btrfs logical address. A
// compressed extent has no per-block logical address, so its blocks get
// addresses past its bytenr that may alias the start of the extents
// stored after it on disk: resolving an address therefore returns every
// candidate, and the caller compares bytes before trusting one.

// blockSource is a file range holding the block an address names.
type blockSource struct {
	path   string
	offset uint64
	bytenr uint64 // the data extent's
	gen    uint64 // the data extent's generation
}

// mappedExtent is a data extent of the pool's files and its references.
type mappedExtent struct {
	bytenr, ram, gen uint64
	compressed       bool
	refs             []refLoc // name is an absolute path
}

// poolMap maps data extents to the pool's files that reference them: every
// clean image, precache and revision of every volume. Dirty images are
// left out: they change while their VM runs, and what they share with
// their clean image is found through it.
type poolMap struct {
	plain, packed []*mappedExtent // uncompressed and compressed, by bytenr
	inodes        map[uint64]string
	any           *os.File // for LogicalInodes; nil in an empty pool
}

// buildPoolMap reads the extent items of every file of the pool.
func (p *Pool) buildPoolMap() (*poolMap, error) {
	vids, err := p.Volumes.List()
	if err != nil {
		return nil, err
	}
	m := &poolMap{inodes: map[uint64]string{}}
	byBytenr := map[uint64]*mappedExtent{}
	for _, vid := range vids {
		files, err := p.Volumes.Files(vid)
		if err != nil {
			return nil, err
		}
		for _, path := range files {
			if strings.HasSuffix(path, "-dirty.img") {
				continue
			}
			if err := m.add(path, byBytenr); err != nil {
				m.close()
				return nil, err
			}
		}
	}
	for _, e := range byBytenr {
		if e.ram > 0 {
			if e.compressed {
				m.packed = append(m.packed, e)
			} else {
				m.plain = append(m.plain, e)
			}
		}
	}
	for _, s := range [][]*mappedExtent{m.plain, m.packed} {
		sort.Slice(s, func(i, j int) bool { return s[i].bytenr < s[j].bytenr })
	}
	return m, nil
}

func (m *poolMap) add(path string, byBytenr map[uint64]*mappedExtent) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed meanwhile
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", path, err)
	}
	exts, err := btrfs.Extents(f, 0)
	if err != nil {
		f.Close()
		return err
	}
	m.inodes[st.Ino] = path
	if m.any == nil {
		m.any = f
	} else {
		f.Close()
	}
	for _, e := range exts {
		if e.Type != btrfs.ExtentRegular || e.IsHole() {
			continue
		}
		me := byBytenr[e.DiskBytenr]
		if me == nil {
			me = &mappedExtent{bytenr: e.DiskBytenr, ram: e.RAMBytes, gen: e.Generation,
				compressed: e.Compression != btrfs.CompressNone}
			byBytenr[e.DiskBytenr] = me
		}
		me.refs = append(me.refs, refLoc{name: path, offset: e.Offset, extentOffset: e.ExtentOffset, length: e.Length})
	}
	return nil
}

func (m *poolMap) close() {
	if m.any != nil {
		m.any.Close()
		m.any = nil
	}
}

// resolve returns the file ranges that may hold the block at addr.
func (m *poolMap) resolve(addr uint64) []blockSource {
	var out []blockSource
	i := sort.Search(len(m.plain), func(i int) bool { return m.plain[i].bytenr > addr }) - 1
	if i >= 0 {
		out = m.plain[i].sources(addr, out)
	}
	for j := sort.Search(len(m.packed), func(i int) bool { return m.packed[i].bytenr > addr }) - 1; j >= 0; j-- {
		e := m.packed[j]
		if e.bytenr+maxCompressedRAM <= addr {
			break
		}
		out = e.sources(addr, out)
	}
	if len(out) == 0 {
		out = m.resolveByBackref(addr)
	}
	return out
}

// sources appends the references of e that map the block at addr.
func (e *mappedExtent) sources(addr uint64, out []blockSource) []blockSource {
	if addr < e.bytenr || addr >= e.bytenr+e.ram {
		return out
	}
	eo := addr - e.bytenr
	for _, r := range e.refs {
		if r.extentOffset <= eo && eo < r.extentOffset+r.length {
			return append(out, blockSource{path: r.name, offset: r.offset + eo - r.extentOffset, bytenr: e.bytenr, gen: e.gen})
		}
	}
	return out
}

// resolveByBackref asks the kernel which files reference the uncompressed
// block at addr, for extents the map does not know (written after it was
// built), and keeps the pool's files.
func (m *poolMap) resolveByBackref(addr uint64) []blockSource {
	if m.any == nil {
		return nil
	}
	refs, err := btrfs.LogicalInodes(m.any, addr)
	if err != nil {
		return nil // no extent there any more: the entry is stale
	}
	var out []blockSource
	for _, r := range refs {
		path, ok := m.inodes[r.Inode]
		if !ok {
			continue
		}
		if src, ok := itemSource(path, r.Offset, addr); ok {
			out = append(out, src)
		}
	}
	return out
}

// itemSource finds the uncompressed item of path starting at offset and
// the file offset at which it maps addr.
func itemSource(path string, offset, addr uint64) (blockSource, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return blockSource{}, false
	}
	defer f.Close()
	exts, err := btrfs.Extents(f, 0)
	if err != nil {
		return blockSource{}, false
	}
	for _, e := range exts {
		if e.Offset != offset || e.Compression != btrfs.CompressNone || e.IsHole() || addr < e.DiskBytenr {
			continue
		}
		eo := addr - e.DiskBytenr
		if e.ExtentOffset <= eo && eo < e.ExtentOffset+e.Length {
			return blockSource{path: path, offset: e.Offset + eo - e.ExtentOffset, bytenr: e.DiskBytenr, gen: e.Generation}, true
		}
	}
	return blockSource{}, false
}
