// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
)

// timestampLayout is how revision names and qubesd write times: UTC, no zone.
const timestampLayout = "2006-01-02T15:04:05"

// revisions lists the volume's revisions, oldest first. Only regular
// files whose number is a revision id (decimal, no leading zero, at most
// 19 digits) count: anything else with a revision's name (a symlink
// planted to have a revert rename it over the image, a number past
// maxRevision) is foreign, and neither listed, pruned nor reverted to.
func (s *Store) revisions(p Paths) ([]Revision, error) {
	revs := []Revision{}
	entries, err := s.files.readDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return revs, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if id, ts, ok := p.parseRevision(e.Name()); ok && e.Type().IsRegular() {
			revs = append(revs, Revision{ID: id, Timestamp: ts})
		}
	}
	sort.Slice(revs, func(i, j int) bool {
		return revisionNumber(revs[i].ID) < revisionNumber(revs[j].ID)
	})
	return revs, nil
}

// pruneRevisions keeps the newest keep revisions; keep <= 0 removes all.
func (s *Store) pruneRevisions(p Paths, keep int) error {
	return s.dropOldRevisions(p, keep, func(name string) error {
		_, err := s.files.remove(name)
		return err
	})
}

// pruneRevisionsLater keeps the newest keep revisions, moving the others
// to the trash, which deletes them once the caller has returned. One the
// trash cannot take is deleted at once.
func (s *Store) pruneRevisionsLater(p Paths, keep int) error {
	return s.dropOldRevisions(p, keep, func(name string) error {
		err := s.trash.put(p.vid(), name)
		if err == nil {
			return nil
		}
		s.log.Warn("deleting a pruned revision now: cannot move it to the trash", "file", s.files.abs(name), "err", err)
		_, err = s.files.remove(name)
		return err
	})
}

// dropOldRevisions passes every revision but the newest keep to drop,
// oldest first.
func (s *Store) dropOldRevisions(p Paths, keep int, drop func(name string) error) error {
	revs, err := s.revisions(p)
	if err != nil {
		return err
	}
	for _, rev := range revs[:max(len(revs)-max(keep, 0), 0)] {
		if err := drop(p.Revision(rev.ID, rev.Timestamp)); err != nil {
			return err
		}
		s.log.Info("pruned revision", "vid", p.Dir+"/"+p.Name, "revision", rev.ID, "timestamp", rev.Timestamp)
	}
	return nil
}

// saveClean makes the clean image the next revision, by a hard link
// named after its mtime, and returns the revision's name, or "" when it
// saves none: the volume keeps no revisions or has no clean image, or its
// newest revision already is the clean image's inode, left by a commit or
// revert that was killed before its rename. The rename that follows
// replaces the clean name, so the revision keeps the old image whole
// without a copy, and only an interrupted commit leaves the two names on
// one inode, which tells such a left-over from a revision of equal data.
func (s *Store) saveClean(p Paths, spec Spec) (string, error) {
	if spec.RevisionsToKeep <= 0 {
		return "", nil
	}
	clean, err := s.files.stat(p.Clean)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	revs, err := s.revisions(p)
	if err != nil {
		return "", err
	}
	next := uint64(1)
	if len(revs) > 0 {
		newest := revs[len(revs)-1]
		info, err := s.files.stat(p.Revision(newest.ID, newest.Timestamp))
		if err != nil {
			return "", err
		}
		if os.SameFile(info, clean) {
			s.log.Info("newest revision already is the clean image", "vid", spec.VID, "revision", newest.ID)
			return "", nil
		}
		if revisionNumber(newest.ID) >= maxRevision {
			return "", fmt.Errorf("%w: revision %s has the largest number a revision can have; remove it to commit",
				ErrInvalidName, newest.ID)
		}
		next = revisionNumber(newest.ID) + 1
	}
	rev := Revision{ID: fmt.Sprint(next), Timestamp: clean.ModTime().UTC().Format(timestampLayout)}
	name := p.Revision(rev.ID, rev.Timestamp)
	if err := s.files.link(p.Clean, name); err != nil {
		return "", err
	}
	s.log.Info("saved revision", "vid", spec.VID, "revision", rev.ID, "timestamp", rev.Timestamp)
	return name, nil
}

// dropRevision removes a revision saved by a commit that then failed, so
// that the failure changes nothing.
func (s *Store) dropRevision(name string) {
	if name == "" {
		return
	}
	if _, err := s.files.remove(name); err != nil {
		s.log.Warn("could not remove the revision of a failed commit", "path", s.files.abs(name), "err", err)
	}
}

// checkCommit refuses a commit that could not complete, before it changes
// anything: from must be a regular file with one link, and each other
// image name of the volume a regular file or nothing, so that neither the
// steps of the commit nor the state read after it fail on something
// planted.
func (s *Store) checkCommit(p Paths, from string) error {
	info, err := s.files.stat(from)
	if err != nil {
		return err
	}
	check := s.files.checkSingleLink
	if from == p.Dirty {
		// Started with snapshots disabled, the dirty image is the clean
		// image renamed, which running snapshot volumes may still link as
		// their clean image; revisions_to_keep may have been raised since.
		check = s.files.checkLinksInPool
	}
	if err := check(from, info); err != nil {
		return err
	}
	for _, name := range []string{p.Clean, p.Dirty, p.Precache, p.Import} {
		if _, err := s.files.stat(name); name != from && err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// commit makes from (the dirty or the import image) the new clean image.
// Everything that can refuse it is checked first; then from is synced,
// the clean image saved as a new revision and from renamed over the clean
// image. A failure up to there removes the new revision again, so a
// failed commit changes no file. Old revisions are pruned only once the
// commit has landed, and a new precache is made.
func (s *Store) commit(p Paths, spec Spec, from string) error {
	if err := s.checkCommit(p, from); err != nil {
		return err
	}
	if err := s.syncFile(from); err != nil {
		return err
	}
	failpoint.Hit("commit.after-fsync")
	saved, err := s.saveClean(p, spec)
	if err != nil {
		return err
	}
	failpoint.Hit("commit.after-revision")
	if err := s.replaceClean(p, from); err != nil {
		if !renamed(err) {
			s.dropRevision(saved)
		}
		return err
	}
	failpoint.Hit("commit.after-rename")
	s.log.Info("committed volume", "vid", spec.VID, "from", s.files.abs(from))
	if err := s.pruneRevisionsLater(p, spec.RevisionsToKeep); err != nil {
		// The commit has landed and is what the caller asked for; the
		// next commit prunes what is left.
		s.log.Warn("could not prune revisions", "vid", spec.VID, "err", err)
	}
	failpoint.Hit("commit.after-prune")
	later := s.hooks.Committed(Committed{VID: spec.VID, Clean: p.file(CleanFile), Precache: !spec.SnapshotsDisabled(),
		Imported: from == p.Import})
	if later || spec.SnapshotsDisabled() {
		return nil
	}
	defer failpoint.Hit("commit.after-precache-copy")
	return s.copyFile(p.Clean, p.Precache, copyOptions{keepMtime: true})
}

// replaceClean drops the precache, which would be stale, and renames from
// over the clean image.
func (s *Store) replaceClean(p Paths, from string) error {
	if _, err := s.files.remove(p.Precache); err != nil {
		return err
	}
	failpoint.Hit("commit.after-precache-removal")
	return s.files.rename(from, p.Clean)
}

// Revert makes revision id (the newest when id is "") the clean image. The
// current clean image is kept as a new revision first, unless
// revisions_to_keep is 0; nothing is pruned, so reverting twice undoes it.
func (s *Store) Revert(spec Spec, id string) (State, error) {
	var st State
	err := s.volumeOp("revert", spec, func(p Paths) error {
		if spec.Kind() != Origin {
			return fmt.Errorf("%w: only save_on_stop volumes have revisions", ErrNotSupported)
		}
		if id != "" {
			if err := ValidateRevision(id); err != nil {
				return err
			}
		}
		dirty, err := s.isDirty(p, spec)
		if err != nil {
			return err
		}
		if dirty {
			return ErrNotStopped
		}
		rev, err := s.findRevision(p, id)
		if err != nil {
			return err
		}
		saved, err := s.saveClean(p, spec)
		if err != nil {
			return err
		}
		failpoint.Hit("revert.after-revision")
		moved := false // the revision became the clean image
		err = s.refreshPrecache(p, spec, func() error {
			failpoint.Hit("revert.after-precache-removal")
			defer failpoint.Hit("revert.after-rename")
			err := s.files.rename(p.Revision(rev.ID, rev.Timestamp), p.Clean)
			moved = renamed(err)
			return err
		})
		if err != nil {
			if !moved {
				s.dropRevision(saved)
			}
			return err
		}
		failpoint.Hit("revert.after-precache-copy")
		s.log.Info("reverted volume", "vid", spec.VID, "revision", rev.ID, "timestamp", rev.Timestamp)
		s.hooks.Reverted(spec.VID)
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

func (s *Store) findRevision(p Paths, id string) (Revision, error) {
	revs, err := s.revisions(p)
	if err != nil {
		return Revision{}, err
	}
	if len(revs) == 0 {
		return Revision{}, fmt.Errorf("no revisions: %w", fs.ErrNotExist)
	}
	if id == "" {
		return revs[len(revs)-1], nil
	}
	for _, rev := range revs {
		if rev.ID == id {
			return rev, nil
		}
	}
	return Revision{}, fmt.Errorf("no revision %q: %w", id, fs.ErrNotExist)
}

// refreshPrecache drops the precache, runs change (which replaces the
// clean image), then reflinks the new clean image to the precache with the
// same mtime. Volumes with snapshots disabled get no precache.
func (s *Store) refreshPrecache(p Paths, spec Spec, change func() error) error {
	if _, err := s.files.remove(p.Precache); err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	if spec.SnapshotsDisabled() {
		return nil
	}
	return s.copyFile(p.Clean, p.Precache, copyOptions{keepMtime: true})
}

// removeStalePrecache drops a precache whose mtime or size no longer match
// the clean image, e.g. after the image was changed by hand.
func (s *Store) removeStalePrecache(p Paths) error {
	clean, err := s.files.stat(p.Clean)
	if err != nil {
		return err
	}
	pre, err := s.files.stat(p.Precache)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if pre.ModTime().Equal(clean.ModTime()) && pre.Size() == clean.Size() {
		return nil
	}
	if _, err := s.files.remove(p.Precache); err != nil {
		return err
	}
	s.log.Warn("removed stale precache", "path", s.files.abs(p.Precache))
	return nil
}

type copyOptions struct {
	keepMtime bool   // give dst src's mtime
	size      *int64 // truncate dst to this size
}

// copyFile makes dst a new inode holding src's data, reflinked when
// possible, atomically.
func (s *Store) copyFile(src, dst string, opts copyOptions) error {
	in, err := s.files.root.OpenFile(src, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.files.abs(src), err)
	}
	defer in.Close()
	var mtime time.Time
	if opts.keepMtime {
		info, err := in.Stat()
		if err != nil {
			return fmt.Errorf("stat %s: %w", s.files.abs(src), err)
		}
		mtime = info.ModTime()
	}
	return s.files.replace(dst, mtime, func(tmp *os.File) error {
		if opts.size == nil || *opts.size != 0 {
			if _, err := cloneOrCopy(context.Background(), tmp, in); err != nil {
				return fmt.Errorf("copy %s to %s: %w", s.files.abs(src), tmp.Name(), err)
			}
		}
		if opts.size != nil {
			if err := tmp.Truncate(*opts.size); err != nil {
				return fmt.Errorf("truncate %s to %d: %w", tmp.Name(), *opts.size, err)
			}
		}
		return nil
	})
}

func (s *Store) syncFile(name string) error {
	f, err := s.files.root.OpenFile(name, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.files.abs(name), err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.files.abs(name), err)
	}
	return nil
}

// allocated is the space a file takes on disk, as st_blocks counts it.
func allocated(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return 0
}
