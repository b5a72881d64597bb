package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/pool/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// blockSize is the unit hashed and deduplicated: btrfs's sector size.
const blockSize = 4096

// DedupStats are the dedup stage's counters (docs/counters.md).
type DedupStats struct {
	Tries       uint64 // index lookups that returned an address
	Hits        uint64 // lookups that found the same bytes at an address
	Misses      uint64 // lookups whose addresses held other bytes, or none resolved
	BytesHashed uint64 // non-zero bytes hashed
	// BytesFreed is the disk space of the extents the stage deduplicated
	// or punched that are free once the transaction committed: measured,
	// not the bytes passed to FIDEDUPERANGE.
	BytesFreed        uint64
	IoctlTime         time.Duration // spent in FIDEDUPERANGE
	ZeroBlocksPunched uint64
}

func (d *DedupStats) add(o DedupStats) {
	d.Tries += o.Tries
	d.Hits += o.Hits
	d.Misses += o.Misses
	d.BytesHashed += o.BytesHashed
	d.BytesFreed += o.BytesFreed
	d.IoctlTime += o.IoctlTime
	d.ZeroBlocksPunched += o.ZeroBlocksPunched
}

// Tunables of the dedup stage.
const (
	// maxDedupExtent bounds the extents the stage reads whole under the
	// volume's lock. Compression leaves extents of at most 128 KiB; larger
	// ones are data that did not compress, up to 128 MiB, and would hold a
	// VM start for too long.
	maxDedupExtent = 16 << 20
)

// deduper is one job's dedup stage. It runs before and after the
// compression stage, on the extents of the clean image the job covers,
// and deduplicates an extent only when every block of it is found elsewhere (or is zero) and
// every reference to it can be replaced (the image's, and its revisions'
// and precache's at the same ranges), so that the extent loses its last
// reference and is freed: btrfs frees nothing of an extent while any part
// of it is referenced. Extents it keeps have their hashes inserted into
// the index.
//
// Partial matches are not left for the compression stage to release,
// although it rewrites the rest of each new extent: with holes punched
// into a new 12 MiB extent, its range defrags (three passes) rewrote only
// some 256 KiB clusters of the pieces left, so the original extent stayed
// referenced and the pool grew by the compressed copies (kernel 6.18).
// The pass after compression finds them instead: extents as compression
// leaves them hold at most 128 KiB, so whole-extent matches are common.
type deduper struct {
	p    *Pool
	idx  *dedupindex.File
	pmap *poolMap            // built on the first index hit of a pass
	srcs map[string]*os.File // sources, opened read-only
	// touched are the disk extents (bytenr -> disk bytes) the stage
	// deduplicated or punched.
	touched map[uint64]uint64
	// own maps disk extents to the volume's items referencing them, read
	// in each pass on the first extent the image shares.
	own map[uint64][]refLoc
	// until is the filesystem generation when the first pass listed the
	// image's extents; final is set for the pass after compression.
	until uint64
	final bool
	stats DedupStats
}

// deduperFor returns the dedup stage for a job on p, or nil when dedup is
// off or the pool's index cannot be opened (the job then only compresses).
func (s *Scheduler) deduperFor(p *Pool, job Job) *deduper {
	if s.cfg.NoDedup {
		return nil
	}
	idx, err := p.dedupIndex()
	if err != nil {
		s.log.Warn("dedup stage off for this job", "pool", p.Name, "vid", job.VID, "err", err)
		return nil
	}
	return &deduper{p: p, idx: idx, srcs: map[string]*os.File{}, touched: map[uint64]uint64{}}
}

// finish closes what the stage opened and writes the index back.
func (d *deduper) finish() {
	if d == nil {
		return
	}
	for _, f := range d.srcs {
		f.Close()
	}
	if d.pmap != nil {
		d.pmap.close()
	}
	if err := d.p.flushIndex(); err != nil {
		d.p.log.Warn("cannot write dedup index back", "pool", d.p.Name, "err", err)
	}
}

// dataExtent is a disk extent and the clean image's items referencing it.
type dataExtent struct {
	bytenr, diskBytes uint64
	compressed        bool
	items             []btrfs.Extent
}

// dedupStage runs a pass of the dedup stage over the job's extents, a
// batch at a time under the volume's lock, and accounts for what it freed.
// The first pass, before compression, frees the extents found whole
// elsewhere, so that they are not compressed first; it indexes only the
// extents compression will not rewrite. The final pass, after
// compression, works on what compression wrote and left, and indexes it.
func (o *optimiser) dedupStage(ctx context.Context, p *Pool, job Job, res *Result, final bool) error {
	d := o.dedup
	if d == nil {
		return nil
	}
	d.final = final
	// Compression replaced extents since the last pass: forget its maps.
	d.own = nil
	if d.pmap != nil {
		d.pmap.close()
		d.pmap = nil
	}
	defer func() { res.Dedup = d.stats }()
	batches, err := d.work(job)
	if err != nil {
		return err
	}
	for _, batch := range batches {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := p.Volumes.Locked(job.VID, "dedup", func(l *volume.Locked) error {
			if running, err := l.Running(); err != nil || running {
				return errors.Join(err, errHeld)
			}
			return d.dedupBatch(l, batch)
		})
		if err != nil {
			return err
		}
	}
	return d.settle(o)
}

// work lists the clean image's extents the pass covers (found as by the
// compression stage's new-data finder), grouped by disk extent, in
// batches of about chunkBytes. The final pass leaves out the compressed
// extents the first pass saw: they are done.
func (d *deduper) work(job Job) ([][]dataExtent, error) {
	var exts []btrfs.Extent
	until := d.until
	err := d.p.Volumes.Locked(job.VID, "plan", func(l *volume.Locked) error {
		f, err := l.Open(l.Clean(), os.O_RDONLY)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := btrfs.Sync(f); err != nil {
			return err
		}
		if !d.final {
			if d.until, err = btrfs.Generation(f); err != nil {
				return err
			}
		}
		if exts, err = btrfs.Extents(f, job.Since); err != nil {
			return err
		}
		if job.DiffRevision {
			exts, err = notInNewestRevision(l, exts)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	byBytenr := map[uint64]int{}
	var all []dataExtent
	for _, e := range exts {
		compressed := e.Compression != btrfs.CompressNone
		if e.Type != btrfs.ExtentRegular || e.IsHole() || e.RAMBytes > maxDedupExtent ||
			(d.final && compressed && until != 0 && e.Generation <= until) {
			continue
		}
		i, ok := byBytenr[e.DiskBytenr]
		if !ok {
			i = len(all)
			byBytenr[e.DiskBytenr] = i
			all = append(all, dataExtent{bytenr: e.DiskBytenr, diskBytes: e.DiskNumBytes, compressed: compressed})
		}
		all[i].items = append(all[i].items, e)
	}
	var batches [][]dataExtent
	var size uint64
	for _, de := range all {
		if len(batches) == 0 || size >= chunkBytes {
			batches, size = append(batches, nil), 0
		}
		k := len(batches) - 1
		batches[k] = append(batches[k], de)
		for _, it := range de.items {
			size += it.Length
		}
	}
	return batches, nil
}

// settle commits the transaction, counts the touched extents now free,
// and hands them to the job's accounting of replaced and created extents.
func (d *deduper) settle(o *optimiser) error {
	if len(d.touched) == 0 {
		return nil
	}
	dir, err := os.Open(d.p.Volumes.Dir())
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := btrfs.Sync(dir); err != nil {
		return err
	}
	for bytenr, n := range d.touched {
		_, err := btrfs.ExtentRefCount(dir, bytenr)
		freed := errors.Is(err, fs.ErrNotExist)
		if err != nil && !freed {
			return err
		}
		if freed {
			d.stats.BytesFreed += n
		}
		switch _, made := o.created[bytenr]; {
		case !made:
			o.replaced[bytenr] = n
		case freed:
			delete(o.created, bytenr) // made and freed by this job
		}
		delete(d.touched, bytenr)
	}
	return nil
}

// dedupDest is the clean image being deduplicated into.
type dedupDest struct {
	f    *os.File
	path string
}

// span is a file range.
type span struct{ offset, length uint64 }

// dedupBatch deduplicates or indexes each extent of batch, and punches
// holes where extents were all zero.
func (d *deduper) dedupBatch(l *volume.Locked, batch []dataExtent) error {
	f, err := l.Open(l.Clean(), os.O_RDWR)
	if err != nil {
		return err
	}
	defer f.Close()
	ino, err := inodeOf(f)
	if err != nil {
		return err
	}
	img := dedupDest{f: f, path: l.Path(l.Clean())}
	for _, de := range batch {
		dests, closeAll, err := d.targets(l, img, ino, de)
		if err != nil {
			return err
		}
		zeros, err := d.dedupExtent(img, dests, de)
		for _, dst := range dests {
			if err == nil {
				err = d.punch(dst, zeros)
			}
		}
		closeAll()
		if err != nil {
			return err
		}
	}
	return nil
}

// targets returns the files whose references to de must all go for de to
// be freed: the image alone when nothing else references de; also the
// volume's revisions and precache when they reference it at exactly the
// image's ranges (as after a reflink copy). It returns none when anything
// else references de: de cannot be freed, though its blocks are still
// good sources.
func (d *deduper) targets(l *volume.Locked, img dedupDest, ino uint64, de dataExtent) ([]dedupDest, func(), error) {
	none := func() {}
	if ok, err := referencedOnlyBy(img.f, ino, de.items[0]); err != nil || ok {
		if ok {
			return []dedupDest{img}, none, nil
		}
		return nil, none, err
	}
	if d.own == nil {
		var err error
		if d.own, err = volumeRefs(l); err != nil {
			return nil, none, err
		}
	}
	locs := d.own[de.bytenr]
	total, err := btrfs.ExtentRefCount(img.f, de.bytenr)
	if err != nil || total != uint64(len(locs)) {
		return nil, none, err
	}
	ranges := map[refLoc]bool{}
	for _, it := range de.items {
		ranges[refLoc{offset: it.Offset, extentOffset: it.ExtentOffset, length: it.Length}] = true
	}
	perFile := map[string]int{}
	for _, loc := range locs {
		if !ranges[refLoc{offset: loc.offset, extentOffset: loc.extentOffset, length: loc.length}] {
			return nil, none, nil
		}
		perFile[loc.name]++
	}
	var others []dedupDest
	closeAll := func() {
		for _, o := range others {
			o.f.Close()
		}
	}
	for name, n := range perFile {
		if n != len(de.items) {
			closeAll()
			return nil, none, nil
		}
		if name == l.Clean() {
			continue
		}
		f, err := l.Open(name, os.O_RDWR)
		if err != nil {
			closeAll()
			return nil, none, err
		}
		others = append(others, dedupDest{f: f, path: l.Path(name)})
	}
	return append([]dedupDest{img}, others...), closeAll, nil
}

// run is a verified match: length bytes of the image at offset equal src's.
type run struct {
	src        blockSource
	offset     uint64
	length     int
	hash, addr uint64
}

// dedupExtent deduplicates de into every one of dests when every block of
// it is zero or found elsewhere, and returns the zero ranges to punch;
// otherwise it inserts the hashes of de's blocks into the index. The
// blocks are read from the image.
func (d *deduper) dedupExtent(img dedupDest, dests []dedupDest, de dataExtent) ([]span, error) {
	var zeros []span
	var runs []run
	type block struct{ hash, addr uint64 }
	var blocks []block
	whole := len(dests) > 0
	for _, it := range de.items {
		data := make([]byte, it.Length)
		if n, err := img.f.ReadAt(data, int64(it.Offset)); err != nil && !(errors.Is(err, io.EOF) && n == len(data)) {
			return nil, fmt.Errorf("read %s at %d: %w", img.path, it.Offset, err)
		}
		whole = whole && it.Length%blockSize == 0
		for b := 0; b+blockSize <= len(data); {
			blk := data[b : b+blockSize]
			off := it.Offset + uint64(b)
			if isZero(blk) {
				zeros = addSpan(zeros, off)
				b += blockSize
				continue
			}
			h := dedupindex.HashBlock(blk)
			d.stats.BytesHashed += blockSize
			blocks = append(blocks, block{h, de.bytenr + it.ExtentOffset + uint64(b)})
			if !whole {
				b += blockSize
				continue
			}
			r, err := d.findRun(dests, de, h, off, data[b:])
			if err != nil {
				return nil, err
			}
			if r.length == 0 {
				whole = false
				b += blockSize
				continue
			}
			runs = append(runs, r)
			for k := blockSize; k < r.length; k += blockSize {
				d.stats.BytesHashed += blockSize
				blocks = append(blocks, block{dedupindex.HashBlock(data[b+k : b+k+blockSize]), de.bytenr + it.ExtentOffset + uint64(b+k)})
			}
			b += r.length
		}
	}
	if whole {
		for _, r := range runs {
			d.dedupe(r, dests)
		}
		d.touched[de.bytenr] = de.diskBytes
		return zeros, nil
	}
	if !d.final && !de.compressed {
		return nil, nil // compression rewrites it: its addresses change
	}
	for _, b := range blocks {
		if b.addr%blockSize == 0 {
			d.idx.Insert(b.hash, b.addr)
		}
	}
	return nil, nil
}

func addSpan(spans []span, off uint64) []span {
	if k := len(spans) - 1; k >= 0 && spans[k].offset+spans[k].length == off {
		spans[k].length += blockSize
		return spans
	}
	return append(spans, span{off, blockSize})
}

// findRun looks the block at the start of data (image offset off, hash h)
// up in the index and returns the longest verified run of blocks from
// there that an older copy holds; a run of length 0 when there is none.
func (d *deduper) findRun(dests []dedupDest, de dataExtent, h, off uint64, data []byte) (run, error) {
	addrs := d.idx.Lookup(h)
	if len(addrs) == 0 {
		return run{}, nil
	}
	d.stats.Tries++
	if d.pmap == nil {
		var err error
		if d.pmap, err = d.p.buildPoolMap(); err != nil {
			return run{}, err
		}
	}
	for _, addr := range addrs {
		stale := false
		for _, src := range d.pmap.resolve(addr) {
			if src.bytenr == de.bytenr {
				continue // the extent itself, indexed by an earlier pass
			}
			n, err := d.runLength(src, dests, off, data)
			if err != nil {
				return run{}, err
			}
			if n > 0 {
				d.stats.Hits++
				return run{src: src, offset: off, length: n, hash: h, addr: addr}, nil
			}
			stale = true
		}
		if stale {
			d.idx.Erase(h, addr) // the data there changed since it was indexed
		}
	}
	d.stats.Misses++
	return run{}, nil
}

// runLength returns how many bytes from the start of data equal src's,
// in whole non-zero blocks. The source is read and compared before any
// dedupe, so a stale index entry costs a read rather than an ioctl.
func (d *deduper) runLength(src blockSource, dests []dedupDest, off uint64, data []byte) (int, error) {
	f, err := d.source(src.path)
	if err != nil || f == nil {
		return 0, err
	}
	n := len(data)
	for _, dst := range dests {
		if src.path == dst.path && src.offset < off+uint64(n) && off < src.offset+uint64(n) {
			// Same-file ranges must not overlap.
			n = int(max(src.offset, off) - min(src.offset, off))
		}
	}
	have := make([]byte, n)
	got, err := f.ReadAt(have, int64(src.offset))
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read %s at %d: %w", src.path, src.offset, err)
	}
	length := 0
	for length+blockSize <= got && bytes.Equal(have[length:length+blockSize], data[length:length+blockSize]) &&
		!isZero(data[length:length+blockSize]) {
		length += blockSize
	}
	return length, nil
}

// source opens path read-only, once per job; nil when it is gone.
func (d *deduper) source(path string) (*os.File, error) {
	if f, ok := d.srcs[path]; ok {
		return f, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d.srcs[path] = f
	return f, nil
}

// dedupe shares the run's source into the image. The kernel compares the
// bytes again; a refusal (the files' checksum modes differ, a send runs,
// the source changed) only leaves the extent in place.
func (d *deduper) dedupe(r run, dests []dedupDest) {
	targets := make([]btrfs.DedupeDest, len(dests))
	for i, dst := range dests {
		targets[i] = btrfs.DedupeDest{File: dst.f, Offset: r.offset}
	}
	began := time.Now()
	done, err := btrfs.Dedupe(d.srcs[r.src.path], r.src.offset, uint64(r.length), targets)
	d.stats.IoctlTime += time.Since(began)
	switch {
	case err != nil:
		d.p.log.Debug("dedupe refused", "pool", d.p.Name, "err", err)
	case slices.Contains(done, 0):
		d.idx.Erase(r.hash, r.addr)
	default:
		d.idx.MarkUseful(r.hash, r.addr)
	}
}

// punch turns all-zero extents of the image into holes, keeping its times:
// the volume's precache and revisions are told apart by mtime.
func (d *deduper) punch(dst dedupDest, zeros []span) error {
	if len(zeros) == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(dst.f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", dst.path, err)
	}
	for _, z := range zeros {
		if err := unix.Fallocate(int(dst.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(z.offset), int64(z.length)); err != nil {
			return fmt.Errorf("punch hole in %s at %d+%d: %w", dst.path, z.offset, z.length, err)
		}
		d.stats.ZeroBlocksPunched += z.length / blockSize
	}
	times := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst.path, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("restore times of %s: %w", dst.path, err)
	}
	return nil
}

var zeroBlock [blockSize]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }
