// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// errHeld means the volume started while its job ran: the job waits for
// the next commit, which finds everything still left to do.
var errHeld = errors.New("volume started; optimization held until its next commit")

// Result is what one job achieved.
type Result struct {
	// Counters are the job's own, the job_ ones left at zero.
	Counters Counters
	// DiskBefore is the disk space of the extents the job replaced and
	// that are now free; DiskAfter that of the extents it made and that
	// are in use: the space really freed, not bytes rewritten.
	DiskBefore, DiskAfter uint64
}

// Saved is the disk space the job freed.
func (r Result) Saved() int64 { return int64(r.DiskBefore) - int64(r.DiskAfter) }

// addCompressed counts what the compression stage did.
func (r *Result) addCompressed(o compress.Result) {
	r.Counters.add(CountCompressBytesExamined, o.BytesExamined)
	r.Counters.add(CountCompressBytesCompressed, o.BytesCompressed)
	r.Counters.add(CountCompressBytesSkippedShared, o.SkippedShared)
}

// madeExtents returns the disk extents (bytenr -> disk bytes) the files
// reference that were written since the job began, once its work is done:
// what the job made, wherever range defrag chose to write it. Extents the
// job deduplicated into the files from other volumes are older and left
// out: they existed before the job and take no more space for it. (With
// several jobs at once, a copy another job made meanwhile and this one
// shared counts against both: a saving is then under-reported, never
// over-reported.)
func (p *Pool) madeExtents(vid string, files []fileWork, began uint64) (map[uint64]uint64, error) {
	found := map[uint64]uint64{}
	err := p.Volumes.ReadLocked(vid, func(l *volume.Locked) error {
		for _, fw := range files {
			if fw.noCOW {
				continue // left alone, and not planned
			}
			f, err := l.Open(fw.name, os.O_RDONLY)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			exts, err := btrfs.Extents(f, max(fw.since, began))
			f.Close()
			if err != nil {
				return err
			}
			addDiskExtents(found, exts)
		}
		return nil
	})
	return found, err
}

// addDiskExtents adds the data extents exts reference to found (bytenr ->
// disk bytes).
func addDiskExtents(found map[uint64]uint64, exts []btrfs.Extent) {
	for _, e := range exts {
		if !e.IsHole() && e.Type != btrfs.ExtentInline {
			found[e.DiskBytenr] = e.DiskNumBytes
		}
	}
}

// planFiles finds the work in each file the job covers.
func (p *Pool) planFiles(job Job) ([]fileWork, error) {
	targets, err := p.jobTargets(job)
	if err != nil {
		return nil, err
	}
	files := make([]fileWork, len(targets))
	for i, target := range targets {
		if files[i], err = p.findWork(job, target); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// optimizeFile works on one file: the clean image goes through the
// replace pass, which also compresses what stays unique; a revision, or
// the image when dedup is off, through the compression stage.
func (r *jobRun) optimizeFile(ctx context.Context, fw fileWork, t *tally) error {
	if fw.noCOW {
		r.p.log.Warn("left as it is: no-COW file (chattr +C), which btrfs neither compresses nor shares",
			"pool", r.p.Name, "vid", r.job.VID, "file", fw.name)
		return nil
	}
	if fw.clean() && r.dedup != nil {
		// The job's progress counts the file's planned bytes; the stage's
		// share done is scaled to them.
		share, told := fw.bytes(), uint64(0)
		err := r.dedup.replacePass(ctx, fw, func(done, total uint64) {
			n := uint64(float64(share) * float64(done) / float64(max(total, 1)))
			t.add(n - told)
			told = n
		})
		r.phases.done("dedup")
		if err == nil {
			t.add(share - told)
		}
		return err
	}
	err := r.compressItems(ctx, fw, t)
	r.phases.done("compress")
	return err
}

// compressItems compresses the file's planned chunks, one at a time.
func (r *jobRun) compressItems(ctx context.Context, fw fileWork, t *tally) error {
	for _, it := range fw.items {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := r.compressItem(it)
		r.res.addCompressed(c)
		if err != nil {
			return err
		}
		t.add(it.length)
		failpoint.Hit("optimize.between-chunks")
	}
	return nil
}

// compressItem compresses one chunk under the volume's lock, unless the
// volume started.
func (r *jobRun) compressItem(it workItem) (compress.Result, error) {
	var c compress.Result
	err := r.p.Volumes.Locked(r.job.VID, "optimize", func(l *volume.Locked) error {
		if running, err := l.Running(); err != nil || running {
			return errors.Join(err, errHeld)
		}
		var err error
		c, err = r.compressRange(l, it)
		return err
	})
	return c, err
}

// jobTargets names the files a job works on: the clean image, and for a
// full pass the revisions too (they may hold extents nothing else does).
func (p *Pool) jobTargets(job Job) ([]volume.File, error) {
	var targets []volume.File
	err := p.Volumes.ReadLocked(job.VID, func(l *volume.Locked) error {
		if running, err := l.Running(); err != nil || running {
			return errors.Join(err, errHeld)
		}
		targets = append(targets, l.Clean())
		if job.Full {
			revs, err := l.Revisions()
			if err != nil {
				return err
			}
			targets = append(targets, revs...)
		}
		return nil
	})
	return targets, err
}

// fileWork is the work a job plans in one of the volume's files.
type fileWork struct {
	name  volume.File
	noCOW bool   // chattr +C: nothing can be done to it
	ino   uint64 // the file planned, so that a replacement is not marked done
	// since is the generation from which the file's extents are new for
	// the job: see sinceFor.
	since uint64
	items []workItem
	// extents are the clean image's new data extents, for the dedup stage;
	// disk are the disk extents of all the file's new items: those the
	// job may replace, and free (see ledger.settle).
	extents []dataExtent
	disk    map[uint64]uint64
	// changed is when the file last changed before the plan, and
	// committed whether its planning made a commit (see commitAfter).
	changed   time.Time
	committed bool
}

// clean reports whether the file is the clean image, which the dedup
// stage reads too.
func (fw fileWork) clean() bool { return fw.name.Kind() == volume.CleanFile }

// bytes is the logical bytes of the file's planned work.
func (fw fileWork) bytes() uint64 {
	var n uint64
	for _, it := range fw.items {
		n += it.length
	}
	return n
}

// workItem is one contiguous file range of target to compress.
type workItem struct {
	target         volume.File
	offset, length uint64
	// since and until bound the generations of the extents to work on:
	// new since the VM started, and older than the job, whose own
	// rewrites must not be taken for work again.
	since, until uint64
}

// findWork lists target's uncompressed extents that job covers, cut into
// chunks, and for the clean image all its new extents, for the dedup
// stage. Cost grows with the number of new extents: the search visits
// only the file's items newer than the file's since.
func (p *Pool) findWork(job Job, target volume.File) (fileWork, error) {
	fw := fileWork{name: target}
	var exts []btrfs.Extent
	var until uint64
	synced, committed, err := p.syncFor(target)
	if err != nil {
		return fw, err
	}
	fw.changed, fw.committed = synced.changed, committed
	err = p.Volumes.Locked(job.VID, "plan", func(l *volume.Locked) error {
		f, err := l.Open(target, os.O_RDONLY)
		if err != nil {
			return err
		}
		defer f.Close()
		if fw.ino, err = syncIfReplaced(f, synced.ino); err != nil {
			return err
		}
		flags, err := btrfs.Flags(f)
		if err != nil {
			return err
		}
		// btrfs neither compresses a no-COW file nor shares extents
		// between it and a file with checksums: nothing to do.
		if fw.noCOW = flags&btrfs.FlagNoCOW != 0; fw.noCOW {
			return nil
		}
		if fw.clean() {
			if err := markCompressible(l, f, flags); err != nil {
				return err
			}
		}
		fw.since = p.sinceFor(job, target, fw.ino)
		if until, err = btrfs.Generation(f); err != nil {
			return err
		}
		if exts, err = btrfs.Extents(f, fw.since); err != nil {
			return err
		}
		fw.disk = map[uint64]uint64{}
		addDiskExtents(fw.disk, exts)
		if job.DiffRevision && fw.clean() {
			exts, err = notInNewestRevision(l, exts)
		}
		return err
	})
	if err != nil {
		return fw, err
	}
	if fw.clean() {
		fw.extents = byDiskExtent(exts)
	}
	fw.items = chunks(target, exts, fw.since, until)
	return fw, nil
}

// chunks cuts the compressible extents of exts into work items of at most
// chunkBytes, merging adjacent ones: the compression stage's plan.
func chunks(target volume.File, exts []btrfs.Extent, since, until uint64) []workItem {
	var items []workItem
	for _, e := range exts {
		if !compress.Compressible(e) {
			continue
		}
		for off := e.Offset; off < e.Offset+e.Length; off += chunkBytes {
			n := min(chunkBytes, e.Offset+e.Length-off)
			if k := len(items) - 1; k >= 0 && items[k].offset+items[k].length == off && items[k].length+n <= chunkBytes {
				items[k].length += n
				continue
			}
			items = append(items, workItem{target: target, offset: off, length: n, since: since, until: until})
		}
	}
	return items
}

// markCompressible clears the NOCOMPRESS flag of the image and gives it,
// its precache and its directory the zstd compression property (see
// compress.MarkCompressible), so that the guest's next writes (to a dirty
// image made in that directory, or from the precache) are compressed as
// they are written. A precache the job makes inherits the directory's
// property; one another driver made, as file-reflink leaves it, has none.
// flags are the image's inode flags.
func markCompressible(l *volume.Locked, img *os.File, flags uint32) error {
	if err := compress.MarkCompressible(img, flags); err != nil {
		return err
	}
	if err := markPrecacheCompressible(l); err != nil {
		return err
	}
	dir, err := l.OpenDir()
	if err != nil {
		return err
	}
	defer dir.Close()
	return compress.SetZstdProperty(dir)
}

// markPrecacheCompressible does for the volume's precache, if it has one,
// what compress.MarkCompressible does; a no-COW precache is left as it is.
func markPrecacheCompressible(l *volume.Locked) error {
	f, err := l.Open(l.Precache(), os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := btrfs.Flags(f)
	if err != nil || flags&btrfs.FlagNoCOW != 0 {
		return err
	}
	return compress.MarkCompressible(f, flags)
}

// notInNewestRevision keeps the extents the newest revision does not
// reference: what changed since it was taken, when no start generation
// was recorded (a commit made by another driver, say).
func notInNewestRevision(l *volume.Locked, exts []btrfs.Extent) ([]btrfs.Extent, error) {
	revs, err := l.Revisions()
	if err != nil || len(revs) == 0 {
		return exts, err
	}
	f, err := l.Open(revs[len(revs)-1], os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	old, err := btrfs.Extents(f, 0)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	for _, e := range old {
		seen[e.DiskBytenr] = true
	}
	fresh := exts[:0]
	for _, e := range exts {
		if !seen[e.DiskBytenr] {
			fresh = append(fresh, e)
		}
	}
	return fresh, nil
}

// compressRange compresses the still-uncompressed extents of it: the ones
// only its file references by a range defrag, the shared ones by
// compressShared.
func (r *jobRun) compressRange(l *volume.Locked, it workItem) (compress.Result, error) {
	f, err := l.Open(it.target, os.O_RDWR)
	if err != nil {
		return compress.Result{}, err
	}
	defer f.Close()
	rng := compress.Range{Offset: it.offset, Length: it.length, Since: it.since, Until: it.until}
	return r.rw.Rewrite(f, rng, r.enc.minSaving, func(pc btrfs.Extent) (compress.Result, error) {
		return r.compressShared(l, f, pc)
	})
}
