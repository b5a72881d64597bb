// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// extentPlan is the first walk's verdict on one new extent of the image.
type extentPlan struct {
	dataExtent
	pieces []int // into deduper.pieces, in file order
	// saved counts the bytes matched elsewhere or zero; rest those to
	// rewrite so that the extent is freed whole.
	saved, rest uint64
	// forced: a later block of the job was matched to this extent's data,
	// so it must be rewritten (before that block is deduplicated) or the
	// extent would stay pinned by the match.
	forced bool
	// sampled and sampledStored judge an uncompressed extent's
	// compressibility: the bytes of its pieces longer than a block, and
	// what they would take stored compressed, from a sample of each (see
	// judge). A compressible extent is rewritten compressed, matches or
	// not, so that the new data is read once for both stages.
	sampled, sampledStored uint64
	// hashes of the extent's blocks, indexed if it is kept (see remember).
	hashes []indexEntry
	// dests are the volume's files referencing the extent, all changed
	// together; nil when the extent is kept.
	dests   []volume.File
	decided bool
}

type indexEntry struct{ hash, addr uint64 }

// judge samples one piece of the extent's data for compression, weighing
// the sample by the piece's length. Every piece is judged, not only the
// first: an extent written back from a VM's page cache holds the data of
// several guest files, and its first piece may be a single block (the
// block after it overwritten since) or an already-compressed file's.
func (pl *extentPlan) judge(enc *copyEncoder, data []byte) {
	if len(data) <= blockSize {
		return // a block is never stored smaller
	}
	n, stored := enc.sampleStored(data)
	pl.sampled += uint64(len(data))
	pl.sampledStored += uint64(stored) * uint64(len(data)) / uint64(n)
}

// compressible reports whether the extent's samples save enc's minimum
// share: enough to pay for rewriting it.
func (pl *extentPlan) compressible(enc *copyEncoder) bool {
	return pl.sampled > 0 && enc.savesEnough(int(pl.sampledStored), int(pl.sampled))
}

// remember keeps the hash of the block at offset eo into the extent, to
// index it if the extent is kept. A compressible extent is usually
// rewritten, and indexed where its copy lies, but is kept when something
// beyond the volume shares it or the disk has no room for its copy: its
// hashes are kept too. They are held for the segment only (segmentBytes).
func (pl *extentPlan) remember(hash, eo uint64) {
	if addr, ok := dedupindex.BlockAddr(pl.bytenr, pl.compressed, eo); ok {
		pl.hashes = append(pl.hashes, indexEntry{hash, addr})
	}
}

// piece is a window of at most chunkBytes of one item of an extent: what
// is read, and later changed, under the volume's lock at a time.
type piece struct {
	plan  int
	item  btrfs.Extent // clipped to the window
	runs  []run
	zeros []span
	rest  []span
}

// replacePass replaces every block of the new extents holding data found
// elsewhere, zeros, or data that compresses, by a dedupe, a hole or a
// compressed copy, so that the extents are freed whole (they are "taken
// apart"); it works a segment of them at a time (see
// segmentBytes), in two walks over each segment under the volume's lock a
// window at a time: one reads and matches every block, the other
// deduplicates, punches and rewrites. Reading a whole segment first lets a
// block be matched to an earlier block of the segment, whose extent is
// then rewritten too; a block repeated in a later segment is found through
// the index. The blocks of the extents it keeps are indexed where they
// lie, at the end of their segment.
//
// fw is the plan of the clean image: its new extents, and its inode, so
// that an image replaced since is told apart. progress is told the bytes
// done out of those to do (each piece counts in both walks) after each
// batch; it may block while jobs are paused.
func (d *deduper) replacePass(ctx context.Context, fw fileWork, progress func(done, total uint64)) error {
	job := d.run.job
	defer func() {
		d.plans, d.pieces, d.spans, d.local = nil, nil, nil, nil
		d.run.items = nil // the pass replaced extents they list
		if d.res != nil {
			d.res.close()
			d.res = nil
		}
	}()
	w := &passWalk{job: job, ino: fw.ino, report: progress}
	for _, de := range fw.extents {
		for _, it := range de.items {
			w.total += 2 * it.Length
		}
	}
	err := d.segments(ctx, w, fw.extents)
	if errors.Is(err, errImageReplaced) {
		d.p.log.Info("dedup stopped: the image was replaced during the job", "pool", d.p.Name, "vid", job.VID)
		return nil
	}
	if err != nil {
		return err
	}
	return d.noRoom
}

// segments opens the clean image for the first walks and runs both walks
// over exts, a segment at a time.
func (d *deduper) segments(ctx context.Context, w *passWalk, exts []dataExtent) error {
	var err error
	if w.img, w.running, err = d.openForScan(w.job, &w.ino); err != nil {
		return err
	}
	defer w.img.f.Close()
	for len(exts) > 0 {
		n := segmentLen(exts)
		if err := d.segment(ctx, w, exts[:n], exts); err != nil {
			return err
		}
		exts = exts[n:]
	}
	return nil
}

// segmentLen is how many of exts, at least one, make the next segment.
func segmentLen(exts []dataExtent) int {
	var size uint64
	for i, de := range exts {
		for _, it := range de.items {
			size += it.Length
		}
		if size > segmentBytes && i > 0 {
			return i
		}
	}
	return len(exts)
}

// passWalk is what the segments of a pass share: the clean image the
// first walks read without the lock, and the progress made.
type passWalk struct {
	job         Job
	img         dedupDest
	running     func() error
	ino         uint64 // the clean image's when planned, checked under the lock
	done, total uint64
	report      func(done, total uint64)
}

// step counts the batch's pieces done in one walk.
func (w *passWalk) step(pieces []piece, batch []int) {
	for _, i := range batch {
		w.done += pieces[i].item.Length
	}
	w.report(w.done, w.total)
}

// segment runs both walks over the extents of seg. pending are seg's and
// the later segments' extents: those the pass may yet free, which must
// not serve as sources (see inPass).
func (d *deduper) segment(ctx context.Context, w *passWalk, seg, pending []dataExtent) error {
	d.cut(seg, pending)
	d.local = map[uint64]localBlock{}
	batches := d.batches()
	for k, batch := range batches {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.running(); err != nil {
			return err
		}
		// Keep readAheadBatches batches in flight ahead of this one.
		from := k + readAheadBatches
		if k == 0 {
			from = 0
		}
		for j := from; j <= k+readAheadBatches && j < len(batches); j++ {
			d.readAhead(w.img, batches[j])
		}
		for _, i := range batch {
			if err := d.scan(w.img, i); err != nil {
				return err
			}
		}
		w.step(d.pieces, batch)
	}
	for _, batch := range batches {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := d.onImage(w.job, &w.ino, func(l *volume.Locked, img dedupDest) error {
			return d.apply(l, img, w.ino, batch)
		})
		if err != nil {
			return err
		}
		w.step(d.pieces, batch)
	}
	for _, pl := range d.plans {
		if pl.dests == nil {
			for _, e := range pl.hashes {
				d.idx.Insert(e.hash, e.addr)
			}
		}
	}
	return nil
}

// readAhead starts reading the batch's pieces into the page cache.
// Failing only costs time.
func (d *deduper) readAhead(img dedupDest, batch []int) {
	for _, i := range batch {
		it := d.pieces[i].item
		btrfs.ReadAhead(img.f, it.Offset, it.Length)
	}
}

// openForScan opens the clean image for the first walk, which only reads
// it and so runs without the volume's lock: nothing but this job changes
// the clean image in place (a commit, revert or import puts another file
// there, which the second walk, under the lock, tells by its inode), and
// a VM start need not wait behind reads at idle I/O priority. running
// returns errHeld once the volume has started.
func (d *deduper) openForScan(job Job, ino *uint64) (img dedupDest, running func() error, err error) {
	err = d.onImage(job, ino, func(l *volume.Locked, locked dedupDest) error {
		f, err := l.Open(l.Clean(), os.O_RDONLY)
		img = dedupDest{f: f, file: locked.file, path: locked.path}
		return err
	})
	if err != nil {
		return dedupDest{}, nil, err
	}
	running = func() error {
		started, err := d.p.Volumes.Running(job.VID)
		if started {
			return errHeld
		}
		return err
	}
	return img, running, nil
}

// errImageReplaced: the clean image is another file than when the job
// read it (a revert or an import): what was read no longer applies.
var errImageReplaced = errors.New("clean image replaced")

// onImage runs fn under the volume's lock with the clean image open for
// writing, unless the volume started. ino is the image's inode as planned
// (set on the first call if unknown), checked on every call.
func (d *deduper) onImage(job Job, ino *uint64, fn func(*volume.Locked, dedupDest) error) error {
	return d.p.Volumes.Locked(job.VID, "dedup", func(l *volume.Locked) error {
		if running, err := l.Running(); err != nil || running {
			return errors.Join(err, errHeld)
		}
		f, err := l.Open(l.Clean(), os.O_RDWR)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := compress.InodeOf(f)
		if err != nil {
			return err
		}
		if *ino == 0 {
			*ino = n
		} else if *ino != n {
			return errImageReplaced
		}
		return fn(l, dedupDest{f: f, file: l.Clean(), path: d.p.Volumes.Path(l.Clean())})
	})
}

// cut makes a plan for each extent of seg and cuts its items into pieces,
// and lists the disk spans of the pending extents.
func (d *deduper) cut(seg, pending []dataExtent) {
	d.plans = make([]extentPlan, len(seg))
	d.spans = make([]diskSpan, 0, len(pending))
	d.pieces = nil
	for _, de := range pending {
		d.spans = append(d.spans, diskSpan{de.bytenr, de.bytenr + max(de.diskBytes, blockSize)})
	}
	for i, de := range seg {
		d.plans[i].dataExtent = de
		for _, it := range de.items {
			for off := uint64(0); off < it.Length; off += chunkBytes {
				pc := it
				pc.Offset += off
				pc.ExtentOffset += off
				pc.Length = min(chunkBytes, it.Length-off)
				d.plans[i].pieces = append(d.plans[i].pieces, len(d.pieces))
				d.pieces = append(d.pieces, piece{plan: i, item: pc})
			}
		}
	}
	slices.SortFunc(d.spans, func(a, b diskSpan) int { return cmp.Compare(a.start, b.start) })
}

// batches groups the pieces, in order, into batches of about chunkBytes.
// A compressed extent (at most 128 KiB of data) is never cut between two
// batches, so that a batch frees it whole or leaves it (see rewrite).
func (d *deduper) batches() [][]int {
	var out [][]int
	var size uint64
	for i, pc := range d.pieces {
		sameExtent := i > 0 && d.pieces[i-1].plan == pc.plan && d.plans[pc.plan].compressed
		if len(out) == 0 || size+pc.item.Length > chunkBytes && !sameExtent {
			out, size = append(out, nil), 0
		}
		out[len(out)-1] = append(out[len(out)-1], i)
		size += pc.item.Length
	}
	return out
}

// scan reads piece i from the image, hashes its blocks and sorts them into
// runs found elsewhere, zeros, and the rest.
func (d *deduper) scan(img dedupDest, i int) error {
	pc := &d.pieces[i]
	pl := &d.plans[pc.plan]
	it := pc.item
	data, err := d.readPiece(img, it)
	if err != nil {
		return err
	}
	if !pl.compressed {
		pl.judge(d.enc, data)
		d.stats.add(CountCompressBytesExamined, uint64(len(data)))
	}
	for b := 0; b < len(data); {
		off := it.Offset + uint64(b)
		if b+blockSize > len(data) {
			// A partial block ends the file: it is only kept.
			pc.rest = addSpan(pc.rest, off, uint64(len(data)-b))
			pl.rest += uint64(len(data) - b)
			break
		}
		blk := data[b : b+blockSize]
		if isZero(blk) {
			pc.zeros = addSpan(pc.zeros, off, blockSize)
			pl.saved += blockSize
			b += blockSize
			continue
		}
		h := dedupindex.HashBlock(blk)
		d.stats.add(CountDedupBytesHashed, blockSize)
		r, err := d.findRun(img, h, off, data[b:])
		if err != nil {
			return err
		}
		parts, err := d.readableRuns(r)
		if err != nil {
			return err
		}
		b += d.sortRun(i, it.ExtentOffset+uint64(b), h, data[b:], r, parts)
	}
	return nil
}

// apply carries out the batch's pieces of the extents worth taking apart:
// the rest of every such piece is rewritten compressed first, then the
// runs are deduplicated and the zeros punched, in every file referencing
// the extent. A run's source within the job lies in an earlier piece, or
// in this batch's rests, so it has been rewritten by then. ino is the
// image's inode, which the caller checked.
func (d *deduper) apply(l *volume.Locked, img dedupDest, ino uint64, batch []int) error {
	open := map[volume.File]dedupDest{l.Clean(): img}
	defer func() {
		for name, dst := range open {
			if name != l.Clean() {
				dst.f.Close()
			}
		}
	}()
	var work []pieceDests
	for _, i := range batch {
		pc := &d.pieces[i]
		pl := &d.plans[pc.plan]
		if !pl.decided {
			if err := d.decide(l, img, ino, pl); err != nil {
				return err
			}
		}
		if pl.dests == nil {
			continue
		}
		w := pieceDests{piece: i}
		for _, name := range pl.dests {
			dst, ok := open[name]
			if !ok {
				f, err := l.Open(name, os.O_RDWR)
				if err != nil {
					return err
				}
				dst = dedupDest{f: f, file: name, path: d.p.Volumes.Path(name)}
				open[name] = dst
			}
			w.dests = append(w.dests, dst)
		}
		work = append(work, w)
	}
	work, err := d.rewrite(img, work)
	if err != nil {
		return err
	}
	for _, w := range work {
		pc := &d.pieces[w.piece]
		for _, r := range pc.runs {
			d.dedupe(r, w.dests)
		}
		for _, dst := range w.dests {
			if err := d.punch(dst, pc.zeros); err != nil {
				return err
			}
		}
		pl := &d.plans[pc.plan]
		d.run.ledger.deduped[pl.bytenr] = pl.diskBytes
		failpoint.Hit("dedup.after-take-apart")
	}
	return nil
}

// pieceDests is a piece to take apart and the files it is changed in.
type pieceDests struct {
	piece int
	dests []dedupDest
}

// decide settles whether pl is taken apart, and if so which files
// reference it: when some of it is saved, or it is compressible, and
// rewriting it frees it. An uncompressed saving extent then frees at least
// as much as it rewrites (the extent holds the rest and more), and a
// compressible one is rewritten in less space; a compressed one is checked
// once its rest is rewritten (see rewrite). So the pool never grows.
func (d *deduper) decide(l *volume.Locked, img dedupDest, ino uint64, pl *extentPlan) error {
	pl.decided = true
	compressible := pl.compressible(d.enc)
	if pl.saved == 0 && !pl.forced && !compressible {
		return nil
	}
	dests, err := d.targets(l, img, ino, pl.dataExtent)
	if errors.Is(err, errExtentGone) {
		return nil
	}
	if err != nil {
		return err
	}
	if dests == nil {
		if compressible {
			for _, it := range pl.items {
				d.stats.add(CountCompressBytesSkippedShared, it.Length)
			}
		}
		return nil
	}
	room, err := d.roomToRewrite(img, pl)
	if room {
		pl.dests = dests
	}
	return err
}

// roomToRewrite reports whether pl's rest, uncompressed, fits in the free
// space. An extent is taken apart a window at a time and freed only once
// all of it is: a rewrite cut short by a full disk would leave the copies
// made so far beside the extent they could not yet free. An extent that
// does not fit is kept; the stage goes on with the others, which may free
// room, and the job ends with a no-space error (d.noRoom).
func (d *deduper) roomToRewrite(img dedupDest, pl *extentPlan) (bool, error) {
	free, err := freeSpace(img)
	if err != nil || free >= pl.rest {
		return err == nil, err
	}
	d.p.log.Warn("extent kept: no room to rewrite it", "pool", d.p.Name, "path", img.path,
		"extent", pl.bytenr, "rest", pl.rest, "free", free)
	if d.noRoom == nil {
		d.noRoom = fmt.Errorf("take apart the extent at %d of %s: %d bytes to rewrite, %d free: %w",
			pl.bytenr, img.path, pl.rest, free, unix.ENOSPC)
	}
	return false, nil
}

// freeSpace is the space left for data on img's filesystem.
func freeSpace(img dedupDest) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(img.f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", img.path, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func (d *deduper) dedupeTimed(src *os.File, off, n uint64, dests []btrfs.DedupeDest) ([]uint64, error) {
	began := time.Now()
	done, err := btrfs.Dedupe(src, off, n, dests)
	d.stats.addTime(CountDedupIoctlMs, time.Since(began))
	return done, err
}

// dedupe shares the run's source into dests. The kernel compares the
// bytes again; a refusal (the files' checksum modes differ, a send runs,
// the source changed) only leaves the extent in place.
func (d *deduper) dedupe(r run, dests []dedupDest) {
	src, err := d.source(r.src.file)
	if err != nil || src == nil {
		d.p.log.Debug("dedupe source gone", "pool", d.p.Name, "path", d.p.Volumes.Path(r.src.file), "err", err)
		return
	}
	targets := make([]btrfs.DedupeDest, len(dests))
	for i, dst := range dests {
		targets[i] = btrfs.DedupeDest{File: dst.f, Offset: r.offset}
	}
	done, err := d.dedupeTimed(src, r.src.offset, uint64(r.length), targets)
	switch {
	case err != nil:
		d.p.log.Debug("dedupe refused", "pool", d.p.Name, "err", err)
	case !r.fromIndex:
	case slices.Contains(done, 0):
		d.idx.Erase(r.hash, r.addr)
	default:
		d.idx.MarkUseful(r.hash, r.addr)
	}
}

// punch turns the zero ranges of dst into holes, keeping its times (the
// volume's precache and revisions are told apart by mtime). Each range is
// read again first: only what is still zero is punched.
func (d *deduper) punch(dst dedupDest, zeros []span) error {
	if len(zeros) == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(dst.f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", dst.path, err)
	}
	buf := make([]byte, chunkBytes)
	for _, z := range zeros {
		data := buf[:z.length]
		if _, err := dst.f.ReadAt(data, int64(z.offset)); err != nil {
			return fmt.Errorf("read %s at %d: %w", dst.path, z.offset, err)
		}
		if !isZero(data) {
			continue
		}
		if err := unix.Fallocate(int(dst.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(z.offset), int64(z.length)); err != nil {
			return fmt.Errorf("punch hole in %s at %d+%d: %w", dst.path, z.offset, z.length, err)
		}
		if dst.file.Kind() == volume.CleanFile { // counted once, not per file sharing them
			d.stats.add(CountDedupZeroBlocksPunched, z.length/blockSize)
		}
	}
	times := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(int(dst.f.Fd()), "", times, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("restore times of %s: %w", dst.path, err)
	}
	return nil
}
