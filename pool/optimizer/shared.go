// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// refLoc is one file extent item pointing into a disk extent.
type refLoc struct {
	name         volume.File
	offset       uint64 // in the file
	extentOffset uint64 // into the disk extent
	length       uint64
}

// extentRef is a refLoc with its file open.
type extentRef struct {
	refLoc
	file *os.File
}

// compressShared replaces a disk extent that several of the volume's own
// files reference (the image and its revisions or precache) with a
// compressed copy, deduplicated into every reference, so the old extent
// is freed whole and no file loses its sharing. When anything outside the
// volume references the extent too, it is left alone: rewriting only our
// references would add the copy without freeing the original.
func (r *jobRun) compressShared(l *volume.Locked, target *os.File, pc btrfs.Extent) (compress.Result, error) {
	res := compress.Result{}
	locs, beyond, err := r.ownRefs(l, target, pc)
	if beyond {
		res.SkippedShared = pc.Length
	}
	if err != nil || len(locs) == 0 {
		return res, err
	}
	refs, closeAll, err := openRefs(l, locs)
	if err != nil {
		return res, err
	}
	defer closeAll()
	lo, hi := refs[0].extentOffset, refs[0].extentOffset+refs[0].length
	for _, ref := range refs {
		lo, hi = min(lo, ref.extentOffset), max(hi, ref.extentOffset+ref.length)
	}
	var copyExts []btrfs.Extent
	rw, err := r.rewriteCompressed(r.tmpDir, copyRewrite{
		fill: func(cp compressedCopy) error { return copyThrough(cp, refs, lo, hi) },
		keep: func(cp compressedCopy) (bool, error) {
			exts, smaller, err := takesLessThan(cp, pc.DiskNumBytes)
			if smaller {
				copyExts = exts
				failpoint.Hit("optimize.after-compressed-copy")
			}
			return smaller, err
		},
		ranges: refRanges(refs, lo),
		dedupe: btrfs.Dedupe,
		made: func(compressedCopy) ([]btrfs.Extent, error) {
			failpoint.Hit("optimize.after-dedupe")
			return copyExts, nil
		},
	})
	if err != nil || !rw.done {
		return res, err
	}
	if rw.whole {
		// What the copy stores compressed, once however many files share it.
		res.BytesCompressed += compressedBytes(rw.made)
	}
	delete(r.items.byExtent, pc.DiskBytenr)
	r.ledger.replaced[pc.DiskBytenr] = pc.DiskNumBytes
	return res, nil
}

// ownRefs returns the volume's references to pc's disk extent when they
// are all there are, or whether anything beyond the volume references it
// too. It returns neither for an extent not worth a copy: one block
// cannot be stored smaller, and an extent not committed yet has
// references unknown.
func (r *jobRun) ownRefs(l *volume.Locked, target *os.File, pc btrfs.Extent) (locs []refLoc, beyond bool, err error) {
	items, err := r.volumeItems(l)
	if err != nil {
		return nil, false, err
	}
	if pc.DiskNumBytes <= 4096 {
		return nil, false, nil // one block cannot be stored smaller
	}
	alone, err := items.holdAlone(target, pc.DiskBytenr, nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil // not committed yet: its references are unknown
	}
	if err != nil || !alone {
		return nil, err == nil, err
	}
	return items.byExtent[pc.DiskBytenr], false, nil
}

// takesLessThan lists the copy's extents and reports whether they take at
// least a block less than diskBytes, the original's: otherwise the copy
// saves nothing worth the rewrite, and the original is kept. Blocks of the
// original that no file references are saved too: the copy leaves them
// out (see copyThrough).
func takesLessThan(cp compressedCopy, diskBytes uint64) ([]btrfs.Extent, bool, error) {
	exts, copyDisk, err := cp.diskBytes()
	if err != nil {
		return nil, false, err
	}
	return exts, copyDisk+blockSize <= diskBytes, nil
}

// refRanges are the ranges of a copy of a disk extent's bytes from lo, at
// copyBase, that replace each of refs.
func refRanges(refs []extentRef, lo uint64) []copyRange {
	ranges := make([]copyRange, len(refs))
	for i, r := range refs {
		ranges[i] = copyRange{off: copyBase + r.extentOffset - lo, length: r.length,
			dests: []btrfs.DedupeDest{{File: r.file, Offset: r.offset}}, into: r.file.Name(), at: r.offset}
	}
	return ranges
}

// volumeItems are the items of the volume's image, revisions and
// precache by the disk extent (written or preallocated) they reference,
// and who holds them: the files' inodes, in subvolume root.
type volumeItems struct {
	byExtent map[uint64][]refLoc
	inodes   map[uint64]bool
	root     uint64
}

// readVolumeItems lists the items of the volume's files.
func readVolumeItems(l *volume.Locked) (*volumeItems, error) {
	names, err := l.Revisions()
	if err != nil {
		return nil, err
	}
	v := &volumeItems{byExtent: map[uint64][]refLoc{}, inodes: map[uint64]bool{}}
	for _, name := range append(names, l.Clean(), l.Precache()) {
		f, err := l.Open(name, os.O_RDONLY)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		err = v.add(f, name)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// add lists the items of f, the volume's file name.
func (v *volumeItems) add(f *os.File, name volume.File) error {
	ino, err := compress.InodeOf(f)
	if err != nil {
		return err
	}
	if v.root, err = btrfs.SubvolumeID(f); err != nil {
		return err
	}
	v.inodes[ino] = true
	exts, err := btrfs.Extents(f, 0)
	if err != nil {
		return err
	}
	for _, e := range exts {
		if e.Type != btrfs.ExtentInline && !e.IsHole() {
			v.byExtent[e.DiskBytenr] = append(v.byExtent[e.DiskBytenr], refLoc{name: name, offset: e.Offset, extentOffset: e.ExtentOffset, length: e.Length})
		}
	}
	return nil
}

// holdAlone reports whether the volume's items are every reference to the
// disk extent at bytenr, through f, any file on the filesystem. Two looks,
// as the cold pass takes them (coldFileSet.refs): the extent's reference
// count, which misses what a snapshot holds (it shares its source's tree
// leaves until either changes, and a shared leaf's items count once), and
// LOGICAL_INO, which lists every item any subvolume or snapshot reaches
// but not one in a tree it cannot walk (being relocated, say). An extent
// not committed yet, or gone, fails with an error wrapping ENOENT. refs
// are LOGICAL_INO's answer if the caller has it, else nil.
func (v *volumeItems) holdAlone(f *os.File, bytenr uint64, refs []btrfs.InodeRef) (bool, error) {
	n := len(v.byExtent[bytenr])
	total, err := btrfs.ExtentRefCount(f, bytenr)
	if err != nil || n == 0 || total != uint64(n) {
		return false, err
	}
	if refs == nil {
		if refs, err = btrfs.LogicalInodes(f, bytenr); err != nil {
			return false, err
		}
	}
	if len(refs) != n {
		return false, nil
	}
	for _, ref := range refs {
		if ref.Root != v.root || !v.inodes[ref.Inode] {
			return false, nil
		}
	}
	return true, nil
}

// openRefs opens the files of locs for writing, each once.
func openRefs(l *volume.Locked, locs []refLoc) ([]extentRef, func(), error) {
	open := map[volume.File]*os.File{}
	closeAll := func() {
		for _, f := range open {
			f.Close()
		}
	}
	refs := make([]extentRef, 0, len(locs))
	for _, loc := range locs {
		f := open[loc.name]
		if f == nil {
			var err error
			if f, err = l.Open(loc.name, os.O_RDWR); err != nil {
				closeAll()
				return nil, nil, err
			}
			open[loc.name] = f
		}
		refs = append(refs, extentRef{refLoc: loc, file: f})
	}
	return refs, closeAll, nil
}

// copyBase is where data starts in a compressed copy: btrfs stores a
// file's only block inline, in its metadata, where it could not be shared.
const copyBase = blockSize

// compressedCopy is a temporary file beneath the pool holding data
// compressed by its encoder, from which data is deduplicated into the
// volume's files. FIDEDUPERANGE writes the copy's data back and waits for
// it, and the copy's extents are committed with the dedupe, so it is not
// synced.
type compressedCopy struct {
	*os.File
	enc *copyEncoder
}

func newCompressedCopy(dir *fsroot.Root, enc *copyEncoder) (compressedCopy, error) {
	if dir == nil {
		return compressedCopy{}, errors.New("create compressed copy: no directory for it")
	}
	// O_TMPFILE: the copy never has a name, so no du or compsize of the
	// pool trips over it, and nothing planted at a name is followed.
	f, err := dir.OpenFile(".", unix.O_RDWR|unix.O_TMPFILE, 0o600)
	if err != nil {
		return compressedCopy{}, fmt.Errorf("create compressed copy: %w", err)
	}
	c := compressedCopy{File: f, enc: enc}
	if err := btrfs.SetCompressionProperty(f, "zstd"); err != nil {
		c.remove()
		return compressedCopy{}, err
	}
	return c, nil
}

// write stores data at off in the copy, compressed; see copyEncoder. The
// compressed extents bypass the page cache, so they are read back whole,
// each once: btrfs.Dedupe's read-ahead of each deduplicated range would
// read a compressed extent again for every range it holds. Failing only
// costs time.
func (c compressedCopy) write(data []byte, off uint64) error {
	if err := c.enc.write(c.File, data, off); err != nil {
		return err
	}
	btrfs.ReadAhead(c.File, off, uint64(len(data)))
	return nil
}

// remove empties and closes the copy, which has no name; what was
// deduplicated from it stays. Emptying it first hands its extents back in
// the running transaction: once writeback has taken an inode reference
// (as when a write fails for lack of space), the file's last put, and
// with it the freeing of its extents, is left to btrfs' cleaner thread.
func (c compressedCopy) remove() {
	_ = c.Truncate(0)
	c.Close()
}

// extents lists the copy's data extents once it is written back: the
// units stored plainly have none before, and encoded writes get theirs
// when they complete, after they return.
func (c compressedCopy) extents() ([]btrfs.Extent, error) {
	if err := btrfs.WriteBack(c.File); err != nil {
		return nil, err
	}
	all, err := btrfs.Extents(c.File, 0)
	out := all[:0]
	for _, e := range all {
		if e.Type == btrfs.ExtentRegular && !e.IsHole() {
			out = append(out, e)
		}
	}
	return out, err
}

// copyThrough writes bytes [lo, hi) of the disk extent, read through its
// references, to the copy at copyBase. Bytes no reference covers (blocks
// since overwritten in every file, as a VM's write leaves them) are not
// copied: they go when the extent is freed, and the copy has a hole there.
func copyThrough(c compressedCopy, refs []extentRef, lo, hi uint64) error {
	buf := make([]byte, copyBuffer)
	for pos := lo; pos < hi; {
		r, ok := refCovering(refs, pos)
		if !ok {
			pos = nextReferenced(refs, pos)
			continue
		}
		n := min(uint64(len(buf)), hi-pos, r.extentOffset+r.length-pos)
		if _, err := r.file.ReadAt(buf[:n], int64(r.offset+pos-r.extentOffset)); err != nil {
			return fmt.Errorf("read %s: %w", r.file.Name(), err)
		}
		if err := c.write(buf[:n], copyBase+pos-lo); err != nil {
			return err
		}
		pos += n
	}
	return nil
}

func refCovering(refs []extentRef, pos uint64) (extentRef, bool) {
	for _, r := range refs {
		if r.extentOffset <= pos && pos < r.extentOffset+r.length {
			return r, true
		}
	}
	return extentRef{}, false
}

// nextReferenced is the first byte after pos that a reference covers;
// copyThrough's pos lies in a gap below the end of the last reference.
func nextReferenced(refs []extentRef, pos uint64) uint64 {
	next := uint64(math.MaxUint64)
	for _, r := range refs {
		if r.extentOffset > pos {
			next = min(next, r.extentOffset)
		}
	}
	return next
}
