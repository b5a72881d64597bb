// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// blockSize is the unit hashed and deduplicated: btrfs's sector size.
const blockSize = 4096

// deduper is one job's dedup stage. It works on the clean image's extents
// the job covers, the data the VM wrote, in place of the compression
// stage (see replacePass): each extent some of whose blocks are found
// elsewhere, or are zero, or that compresses, is taken apart. The
// matching blocks are deduplicated against the older copy, the zero ones
// punched, and the rest rewritten compressed, so that the extent loses
// every reference and is freed: btrfs frees nothing of an extent while
// any part of it is referenced. The blocks that stay are indexed.
//
// Only extents referenced by the clean image alone, or also by the
// volume's revisions and precache at the same ranges (all of which are
// changed together), are touched: rewriting some references of an extent
// that anything else holds would add a copy without freeing it.
type deduper struct {
	p    *Pool
	idx  *dedupindex.File
	res  *resolver                // made on the first index hit
	srcs map[volume.File]*os.File // sources, opened read-only
	// run is the job the stage works for: its ledger takes the extents
	// the stage deduplicated, rewrote or punched (deduped), and its
	// volume references serve both stages.
	run    *jobRun
	tmpDir *fsroot.Root
	enc    *copyEncoder // the job's, which judges what compresses
	stats  *Counters    // the job's

	// The segment's extents, their pieces, and the table of blocks its
	// first walk met first; spans are the extents the pass may still free
	// (the segment's and the later ones'), by address.
	plans  []extentPlan
	spans  []diskSpan
	pieces []piece
	local  map[uint64]localBlock
	// noRoom is the first extent kept for lack of free space to rewrite
	// it, the job's error once the stage has done what it could.
	noRoom error
	// Buffers reused from one piece or batch to the next, so that the
	// stage's garbage does not grow with the data: the piece read, a
	// candidate source's bytes while they are compared, a copy's data, and
	// a block's addresses in the index.
	readBuf, cmpBuf, copyBuf []byte
	addrBuf                  []uint64
}

// newDeduper returns run's dedup stage, which works with the pool's
// index, or nil when the index cannot be opened (the job then only
// compresses).
func newDeduper(r *jobRun) *deduper {
	idx, err := r.p.dedupIndex()
	if err != nil {
		r.p.log.Warn("dedup stage off for this job", "pool", r.p.Name, "vid", r.job.VID, "err", err)
		return nil
	}
	return &deduper{p: r.p, idx: idx, srcs: map[volume.File]*os.File{}, run: r, tmpDir: r.tmpDir,
		enc: r.enc, stats: &r.res.Counters}
}

// finish closes what the stage opened and gives the index back.
func (d *deduper) finish() {
	if d == nil {
		return
	}
	for _, f := range d.srcs {
		f.Close()
	}
	if d.res != nil {
		d.res.close()
	}
	d.p.releaseIndex()
}

// dataExtent is a disk extent and the clean image's items referencing it.
type dataExtent struct {
	bytenr, diskBytes uint64
	compressed        bool
	items             []btrfs.Extent
}

// byDiskExtent groups a file's extent items by the disk extent they
// reference, in file order. Inline extents, holes, and preallocated
// extents (which read as zeros and are punched like zeros written out) are
// left out.
func byDiskExtent(exts []btrfs.Extent) []dataExtent {
	byBytenr := map[uint64]int{}
	var all []dataExtent
	for _, e := range exts {
		if e.Type == btrfs.ExtentInline || e.IsHole() {
			continue
		}
		i, ok := byBytenr[e.DiskBytenr]
		if !ok {
			i = len(all)
			byBytenr[e.DiskBytenr] = i
			all = append(all, dataExtent{bytenr: e.DiskBytenr, diskBytes: e.DiskNumBytes,
				compressed: e.Compression != btrfs.CompressNone})
		}
		all[i].items = append(all[i].items, e)
	}
	return all
}

// readPiece reads the image's bytes of item into the stage's read buffer,
// valid until the next call.
func (d *deduper) readPiece(img dedupDest, item btrfs.Extent) ([]byte, error) {
	if uint64(cap(d.readBuf)) < item.Length {
		d.readBuf = make([]byte, item.Length)
	}
	data := d.readBuf[:item.Length]
	if n, err := img.f.ReadAt(data, int64(item.Offset)); err != nil && !(errors.Is(err, io.EOF) && n == len(data)) {
		return nil, fmt.Errorf("read %s at %d: %w", img.path, item.Offset, err)
	}
	return data, nil
}

// dedupDest is a file being deduplicated into: the clean image, or a
// revision or precache sharing its extent.
type dedupDest struct {
	f    *os.File
	file volume.File
	path string // file's, for messages
}

// span is a file range.
type span struct{ offset, length uint64 }

func addSpan(spans []span, off, n uint64) []span {
	if k := len(spans) - 1; k >= 0 && spans[k].offset+spans[k].length == off {
		spans[k].length += n
		return spans
	}
	return append(spans, span{off, n})
}

// errExtentGone: an extent of the plan is not in the extent tree, freed
// since the plan (an earlier batch replaced all its references) or not
// committed yet. There is nothing to free, and nothing is known to share it.
var errExtentGone = errors.New("data extent gone since the plan")

// targets names the files whose references to de must all go for de to
// be freed, the clean image first: the image alone when nothing else
// references de; also the volume's revisions and precache when they
// reference it at exactly the image's ranges (as after a reflink copy).
// It returns none when anything else references de: de cannot be freed,
// though its blocks are still good sources.
func (d *deduper) targets(l *volume.Locked, img dedupDest, ino uint64, de dataExtent) ([]volume.File, error) {
	refs, err := compress.References(img.f, de.bytenr)
	if err != nil {
		return nil, err
	}
	if compress.OnlyItemsOf(refs, ino) {
		return []volume.File{l.Clean()}, nil
	}
	items, err := d.run.volumeItems(l)
	if err != nil {
		return nil, err
	}
	alone, err := items.holdAlone(img.f, de.bytenr, refs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errExtentGone
	}
	if err != nil || !alone {
		return nil, err
	}
	locs := items.byExtent[de.bytenr]
	ranges := map[refLoc]bool{}
	for _, it := range de.items {
		ranges[refLoc{offset: it.Offset, extentOffset: it.ExtentOffset, length: it.Length}] = true
	}
	perFile := map[volume.File]int{}
	for _, loc := range locs {
		if !ranges[refLoc{offset: loc.offset, extentOffset: loc.extentOffset, length: loc.length}] {
			return nil, nil
		}
		perFile[loc.name]++
	}
	names := []volume.File{l.Clean()}
	for name, n := range perFile {
		if n != len(de.items) {
			return nil, nil
		}
		if name != l.Clean() {
			names = append(names, name)
		}
	}
	return names, nil
}
