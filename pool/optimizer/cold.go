// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// The cold pass recompresses a volume's cold extents at the cold level,
// when no other job waits. Each extent is read through its references,
// written to a compressed copy and deduplicated into every reference at
// once, in whichever of the pool's volumes it lies, so nothing is
// unshared; an extent referenced by anything else (a running VM's image,
// a file outside the pool, a snapshot) is left alone. Compressed extents
// are taken, and uncompressed ones that files reference only in part,
// whose copy frees the rest: what did not compress at the pool's level
// hardly compresses at a stronger one, and reading it whole would cost
// more than it frees. The copies' blocks are indexed, so new data
// deduplicates against them.

// executeCold runs the job's cold pass over the extents of the volume's
// image and revisions that turned cold since its last one.
func (r *jobRun) executeCold(ctx context.Context, progress func(done, total uint64)) (Result, error) {
	began, made, err := r.p.commitAfter(time.Now())
	if err != nil {
		return r.res, err
	}
	if made {
		r.res.Counters.add(CountJobCommits, 1)
	}
	r.ledger.began = began
	st := r.p.state.read()
	marks := st.Cold[r.job.VID]
	through := marks.threshold(r.p.sched.cfg.Cold, time.Now())
	cands, err := r.p.coldExtents(r.job.VID, marks.Through, through, st.ColdWritten)
	if err != nil {
		return r.res, err
	}
	r.ledger.initial = map[uint64]uint64{}
	for _, e := range cands {
		r.ledger.initial[e.DiskBytenr] = e.DiskNumBytes
	}
	err = r.recompressAll(ctx, cands, progress)
	if settleErr := r.settleCold(err == nil, through); err == nil {
		err = settleErr
	}
	return r.res, err
}

// recompressAll recompresses cands one at a time, under the volume's lock
// each, so a start or commit of the volume waits for one extent at most.
func (r *jobRun) recompressAll(ctx context.Context, cands []btrfs.Extent, progress func(done, total uint64)) error {
	files, err := r.p.coldFiles()
	if err != nil {
		return err
	}
	defer files.close()
	t := &tally{report: progress}
	for _, e := range cands {
		t.total += e.RAMBytes
	}
	for _, e := range cands {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := r.p.Volumes.Locked(r.job.VID, "cold", func(l *volume.Locked) error {
			if running, err := l.Running(); err != nil || running {
				return errors.Join(err, errHeld)
			}
			return r.recompress(files, e)
		})
		if err != nil {
			return err
		}
		t.add(e.RAMBytes)
	}
	r.phases.done("cold")
	return nil
}

// settleCold commits, counts what the pass freed and made, and records
// how far it got: through, when it finished.
func (r *jobRun) settleCold(finished bool, through uint64) error {
	if err := r.settleWith(r.ledger.createdInUse); err != nil {
		return err
	}
	end := r.settled
	r.p.state.updateSoon(func(s *state) {
		s.ColdWritten = addColdRange(s.ColdWritten, r.ledger.began, end-1)
		if m, ok := s.Cold[r.job.VID]; ok && finished {
			m.Through = max(m.Through, through)
			s.Cold[r.job.VID] = m
		}
	})
	// The copies went into any of the pool's volumes.
	for vid := range r.p.state.read().Examined {
		r.p.examinedBelow(end, vid, 0)
	}
	return nil
}

// createdInUse is the extents the job made that are still referenced.
func (l *ledger) createdInUse(dir *os.File) (map[uint64]uint64, error) {
	made := map[uint64]uint64{}
	for bytenr, n := range l.created {
		if free, err := isFree(dir, bytenr); err != nil {
			return nil, err
		} else if !free {
			made[bytenr] = n
		}
	}
	return made, nil
}

// coldExtents lists the extents of the volume's image and revisions
// written after since and at or before through that may be worth a cold
// copy (coldCandidate), each once, in disk order.
func (p *Pool) coldExtents(vid string, since, through uint64, written []genRange) ([]btrfs.Extent, error) {
	if through <= since {
		return nil, nil
	}
	names, err := p.Volumes.Files(vid)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	var out []btrfs.Extent
	for _, name := range names {
		if k := name.Kind(); k != volume.CleanFile && k != volume.RevisionFile {
			continue
		}
		exts, err := p.fileExtents(name, since+1)
		if err != nil {
			return nil, err
		}
		for _, e := range exts {
			if !coldCandidate(e, through, written) || seen[e.DiskBytenr] {
				continue
			}
			seen[e.DiskBytenr] = true
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b btrfs.Extent) int { return cmp.Compare(a.DiskBytenr, b.DiskBytenr) })
	return out, nil
}

// coldCandidate reports whether e's extent may be worth a cold copy: one
// written at or before through, not by a cold pass, larger than a block,
// and compressed, or uncompressed and referenced here only in part.
func coldCandidate(e btrfs.Extent, through uint64, written []genRange) bool {
	switch {
	case e.Type != btrfs.ExtentRegular || e.IsHole() || e.DiskNumBytes <= blockSize:
		return false
	case e.Generation > through || coldWrittenBy(written, e.Generation):
		return false
	case e.Compression == btrfs.CompressNone:
		return e.Length+blockSize <= e.RAMBytes && e.Length <= maxColdPlainCopy
	}
	return true
}

// fileExtents lists the extents of a file of the pool written at or after
// minGen; a file gone meanwhile has none.
func (p *Pool) fileExtents(name volume.File, minGen uint64) ([]btrfs.Extent, error) {
	f, err := p.Volumes.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exts, err := btrfs.Extents(f, minGen)
	if err != nil {
		return nil, fmt.Errorf("list extents of %s: %w", f.Name(), err)
	}
	return exts, nil
}

// coldFileSet is the pool's files a cold pass may deduplicate into, by
// inode: every volume's image, revisions and precache, in the pool's
// subvolume. A running VM's image is not among them.
type coldFileSet struct {
	*resolver
	open map[uint64]*os.File
	p    *Pool
}

func (p *Pool) coldFiles() (*coldFileSet, error) {
	r, err := p.resolverOf(func(k volume.FileKind) bool {
		return k == volume.CleanFile || k == volume.RevisionFile || k == volume.PrecacheFile
	})
	if err != nil {
		return nil, err
	}
	return &coldFileSet{resolver: r, open: map[uint64]*os.File{}, p: p}, nil
}

// file opens the pool's file with inode ino, read-only (which is enough
// to be a dedupe destination for root): false when ino is none of the
// set's, or is now another file.
func (s *coldFileSet) file(ino uint64) (*os.File, bool, error) {
	if f := s.open[ino]; f != nil {
		return f, true, nil
	}
	name, ok := s.resolver.file[ino]
	if !ok {
		return nil, false, nil
	}
	f, err := s.p.Volumes.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if got, err := compress.InodeOf(f); err != nil || got != ino {
		f.Close()
		return nil, false, err
	}
	s.open[ino] = f
	return f, true, nil
}

func (s *coldFileSet) close() {
	for _, f := range s.open {
		f.Close()
	}
	s.resolver.close()
}
