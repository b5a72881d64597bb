// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// jobRun is one job's pass over its volume, without ever unsharing an
// extent: what it works with (the pool, the job, the encoder of compressed
// copies, the range rewriter, the dedup stage and its index) and what it
// keeps (the ledger of the extents it replaced and made, and its result).
type jobRun struct {
	p      *Pool
	job    Job
	tmpDir *fsroot.Root // beneath the pool, on the same filesystem: compressed copies
	// rw rewrites the extents only their file references by a range
	// defrag, recording them in the ledger.
	rw *compress.Rewriter
	// items are the volume's items by the disk extent they reference,
	// read on the first shared extent a stage meets and kept current as
	// extents are replaced, so each chunk costs what it rewrites.
	items  *volumeItems
	ledger *ledger
	res    Result
	dedup  *deduper     // nil: compression only
	enc    *copyEncoder // compresses compressed copies
	phases *phases
	// settled is the generation of the settle's commit: what the volume
	// holds after the job was written by then.
	settled uint64
	// fullClean is, for a full job, the inode of the clean image it
	// planned (see examinedBelow).
	fullClean uint64
}

func newJobRun(p *Pool, job Job, level int, enc *copyEncoder, onLevel func(error)) *jobRun {
	r := &jobRun{p: p, job: job, tmpDir: p.tmpDir(), ledger: newLedger(), enc: enc, phases: newPhases()}
	r.rw = compress.NewRewriter(level, onLevel, r.ledger.replaced, r.ledger.created)
	return r
}

// execute runs the job, telling progress the logical bytes done:
//
//  1. plan: find the work in each file the job covers (the clean image,
//     and for a full job its revisions), then commit the filesystem, so
//     that what the job writes is told from what was there;
//  2. replace pass over the clean image: each block of its new extents is
//     replaced by a dedupe, a hole or a compressed copy (dedup_replace.go);
//  3. compress the rest: the revisions' extents, or the image's when the
//     pool's index cannot be used (shared.go, internal/compress);
//  4. precache: the image the volume's next start takes;
//  5. settle: commit again and count what the job freed and made.
//
// A full job marks each file done as it finishes it, so that, interrupted,
// it resumes at the next.
func (r *jobRun) execute(ctx context.Context, progress func(done, total uint64)) (Result, error) {
	files, err := r.plan()
	if err != nil {
		return r.res, err
	}
	err = r.work(ctx, files, progress)
	if err == nil && r.job.Precache {
		err = r.precache()
	}
	if settleErr := r.settle(files); err == nil {
		err = settleErr
	}
	return r.res, err
}

// plan finds the work in each file the job covers and commits the
// filesystem, whose generation then divides old extents from new.
func (r *jobRun) plan() ([]fileWork, error) {
	r.p.Volumes.WaitPruned(r.job.VID)
	files, err := r.p.planFiles(r.job)
	if err != nil {
		return nil, err
	}
	failpoint.Hit("optimize.after-plan")
	// The generation after a commit that began after every planned file
	// last changed divides their extents from the job's: usually the
	// commit their planning took.
	var changed time.Time
	for _, fw := range files {
		if fw.committed {
			r.res.Counters.add(CountJobCommits, 1)
		}
		if r.job.Full && fw.clean() {
			r.fullClean = fw.ino
		}
		changed = later(changed, fw.changed)
	}
	began, made, err := r.p.commitAfter(changed.Add(ctimeSlack))
	if err != nil {
		return nil, err
	}
	if made {
		r.res.Counters.add(CountJobCommits, 1)
	}
	r.ledger.began = began
	r.ledger.plan(files)
	r.phases.done("plan")
	return files, nil
}

// work runs the stages on each file, one after the other.
func (r *jobRun) work(ctx context.Context, files []fileWork, progress func(done, total uint64)) error {
	t := &tally{report: progress}
	for _, fw := range files {
		t.total += fw.bytes()
	}
	for _, fw := range files {
		if err := r.optimizeFile(ctx, fw, t); err != nil {
			return err
		}
		if r.job.Full {
			if err := r.p.markProcessed(r.job.VID, fw, files); err != nil {
				return err
			}
		}
	}
	return nil
}

// precache makes the image the volume's next start takes, the job's
// since the commit left it to the job: the stop's cost stays flat in the
// image's extent count.
func (r *jobRun) precache() error {
	failpoint.Hit("optimize.before-precache")
	err := r.p.Volumes.MakePrecache(r.job.VID)
	r.phases.done("precache")
	return err
}

// settle commits the filesystem and counts, from the ledger, what the
// job freed and made. The next job's plan may take this commit. A job
// that replaced and made nothing has nothing to count, and its plan's
// commit already divides what the volume holds from what comes after:
// it settles without a commit of its own, so that of VMs stopped together
// with little to do, only the first pays for one.
func (r *jobRun) settle(files []fileWork) error {
	if r.ledger.untouched() {
		r.settled = r.ledger.began
		r.phases.done("settle")
		return nil
	}
	return r.settleWith(func(*os.File) (map[uint64]uint64, error) {
		return r.p.madeExtents(r.job.VID, files, r.ledger.began)
	})
}

// settleWith commits, so that reference counts are current, and settles
// the ledger with what made finds the job made that is in use.
func (r *jobRun) settleWith(made func(dir *os.File) (map[uint64]uint64, error)) error {
	defer r.phases.done("settle")
	gen, _, err := r.p.commitAfter(time.Now())
	if err != nil {
		return err
	}
	r.settled = gen
	r.res.Counters.add(CountJobCommits, 1)
	dir, err := r.p.openDir()
	if err != nil {
		return err
	}
	defer dir.Close()
	inUse, err := made(dir)
	if err != nil {
		return err
	}
	return r.ledger.settle(dir, inUse, &r.res)
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// volumeItems returns the volume's items by disk extent, read once.
func (r *jobRun) volumeItems(l *volume.Locked) (*volumeItems, error) {
	if r.items == nil {
		var err error
		if r.items, err = readVolumeItems(l); err != nil {
			return nil, err
		}
	}
	return r.items, nil
}

// tally counts a job's logical bytes done out of those planned.
type tally struct {
	done, total uint64
	report      func(done, total uint64)
}

func (t *tally) add(n uint64) {
	t.done += n
	t.report(t.done, t.total)
}

// ledger records the disk extents (bytenr -> disk bytes) a job replaced
// and made, so that what it freed is measured from the extents it touched:
// the job's cost stays proportional to the new data, not to the image.
type ledger struct {
	// began divides the extents written before the job, all older, from
	// those written since, at least as new: a file extent item keeps its
	// data extent's generation when cloned or deduplicated, so an extent
	// the job shared into the volume from elsewhere stays older.
	began uint64
	// initial are the extents the plan found: the data the job works on.
	initial map[uint64]uint64
	// replaced are the extents the job rewrote or deduplicated away, and
	// created the ones it made; deduped are those of replaced the dedup
	// stage took apart, whose freed bytes it counts.
	replaced, created, deduped map[uint64]uint64
}

func newLedger() *ledger {
	return &ledger{replaced: map[uint64]uint64{}, created: map[uint64]uint64{}, deduped: map[uint64]uint64{}}
}

// untouched reports whether the job replaced and made no extent.
func (l *ledger) untouched() bool {
	return len(l.replaced) == 0 && len(l.created) == 0 && len(l.deduped) == 0
}

// plan records the extents the plan found in files.
func (l *ledger) plan(files []fileWork) {
	l.initial = map[uint64]uint64{}
	for _, fw := range files {
		maps.Copy(l.initial, fw.disk)
	}
}

// settle counts, once the transaction is committed through dir so that
// reference counts are current, the extents the job replaced that existed
// before it and are now free, and sums made, the extents it made that are
// in use. An extent the job made and replaced again is neither.
func (l *ledger) settle(dir *os.File, made map[uint64]uint64, res *Result) error {
	for bytenr, n := range l.deduped {
		freed, err := isFree(dir, bytenr)
		if err != nil {
			return err
		}
		if freed {
			res.Counters.add(CountDedupBytesFreed, n)
		}
		switch _, ours := l.created[bytenr]; {
		case !ours:
			l.replaced[bytenr] = n
		case freed:
			delete(l.created, bytenr)
		}
	}
	clear(l.deduped)
	for bytenr, n := range l.replaced {
		if _, old := l.initial[bytenr]; !old {
			continue
		}
		freed, err := isFree(dir, bytenr)
		if err != nil {
			return err
		}
		if freed {
			res.DiskBefore += n
		}
	}
	for _, n := range made {
		res.DiskAfter += n
	}
	return nil
}

// isFree reports whether the disk extent at bytenr has no reference left.
func isFree(dir *os.File, bytenr uint64) (bool, error) {
	_, err := btrfs.ExtentRefCount(dir, bytenr)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return false, err
}
