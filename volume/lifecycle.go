// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
)

// Create lays out a new volume: an empty sparse clean image and its
// precache for origin volumes, nothing for the others. Stale files of the
// same vid are removed first.
func (s *Store) Create(spec Spec) (State, error) {
	var st State
	err := s.volumeOp("create", spec, func(p Paths) error {
		if err := s.removeAll(p); err != nil {
			return err
		}
		if spec.Kind() == Origin {
			if err := s.files.mkdirAll(p.Dir); err != nil {
				return err
			}
			err := s.refreshPrecache(p, spec, func() error {
				return s.files.createSparse(p.Clean, spec.Size)
			})
			if err != nil {
				return err
			}
			s.log.Info("created volume", "vid", spec.VID, "size", spec.Size)
		}
		var err error
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

// Remove deletes every file of the volume, revisions included, and its
// directory when that becomes empty. Missing files are not an error, so a
// second remove succeeds too. qubesd removes a VM's volumes concurrently:
// the directory is removed under its exclusive lock, once no operation of
// any volume in it runs, and only if it is empty then.
func (s *Store) Remove(spec Spec) (State, error) {
	var st State
	var dir string
	err := s.volumeOp("remove", spec, func(p Paths) error {
		if err := s.removeAll(p); err != nil {
			return err
		}
		failpoint.Hit("remove.after-files")
		s.log.Info("removed volume", "vid", spec.VID)
		s.hooks.Removed(spec.VID)
		st = State{Size: spec.Size, Revisions: []Revision{}}
		dir = p.Dir
		return nil
	})
	if err != nil {
		return st, err
	}
	unlock := s.dirs.lock(dir)
	defer unlock()
	return st, opError("remove", spec.VID, s.files.removeEmptyDir(dir))
}

// Verify checks that the image a start needs is there: the source's clean
// image for a snapshot, the volume's own for an origin.
func (s *Store) Verify(spec Spec) (State, error) {
	var st State
	err := s.volumeOp("verify", spec, func(p Paths) error {
		var need string
		switch spec.Kind() {
		case Snapshot:
			src, err := s.sourcePaths(spec)
			if err != nil {
				return err
			}
			need = src.Clean
		case Origin:
			need = p.Clean
		}
		if need != "" {
			if _, err := s.files.stat(need); err != nil {
				return fmt.Errorf("missing image file %s: %w", s.files.abs(need), fs.ErrNotExist)
			}
		}
		var err error
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

// Start prepares the dirty image the VM will use. It is re-entrant: after a
// crash or a failed start, an origin volume's dirty image is reused, so no
// uncommitted data is lost.
func (s *Store) Start(spec Spec) (State, error) {
	var st State
	s.hooks.Starting(spec.VID)
	err := s.volumeOp("start", spec, func(p Paths) error {
		if err := s.removeIncomplete(p); err != nil {
			return err
		}
		dirty, err := s.isDirty(p, spec)
		if err != nil {
			return err
		}
		switch {
		case dirty:
			if _, err := s.files.statDirty(p.Dirty, spec); err != nil {
				return err
			}
			s.log.Info("reusing dirty image", "vid", spec.VID)
			s.hooks.Started(Started{VID: spec.VID, Clean: p.file(CleanFile), Dirty: p.file(DirtyFile), Reused: true})
		case spec.SnapshotsDisabled() && spec.Kind() == Origin:
			err = s.startWithoutSnapshots(p, spec)
		case spec.Kind() == Origin:
			err = s.startOrigin(p, spec)
		case spec.Kind() == Snapshot:
			err = s.startSnapshot(p, spec)
		default:
			err = s.files.mkdirAll(p.Dir)
			if err == nil {
				err = s.files.createSparse(p.Dirty, spec.Size)
			}
		}
		if err != nil {
			return err
		}
		if !dirty && spec.Kind() == Origin {
			s.hooks.Started(Started{VID: spec.VID, Clean: p.file(CleanFile), Dirty: p.file(DirtyFile)})
		}
		s.log.Info("started volume", "vid", spec.VID, "kind", spec.Kind())
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

// startOrigin turns the precache into the dirty image, or reflinks the
// clean image when there is no valid precache.
func (s *Store) startOrigin(p Paths, spec Spec) error {
	if err := s.removeStalePrecache(p); err != nil {
		return err
	}
	if _, err := s.files.statSingle(p.Precache); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	failpoint.Hit("start.after-precache-check")
	err := s.files.rename(p.Precache, p.Dirty)
	if errors.Is(err, fs.ErrNotExist) {
		err = s.copyFile(p.Clean, p.Dirty, copyOptions{})
	}
	failpoint.Hit("start.after-dirty")
	return err
}

// startWithoutSnapshots moves the clean image to the dirty name: with
// snapshots disabled the running volume exists only as its dirty image.
func (s *Store) startWithoutSnapshots(p Paths, spec Spec) error {
	if err := s.pruneRevisions(p, 0); err != nil {
		return err
	}
	clean, err := s.files.stat(p.Clean)
	if err != nil {
		return err
	}
	if err := s.files.checkLinksInPool(p.Clean, clean); err != nil {
		return err
	}
	if _, err := s.files.remove(p.Precache); err != nil {
		return err
	}
	return s.files.rename(p.Clean, p.Dirty)
}

// startSnapshot hardlinks the source's committed image as this volume's
// clean image (is_outdated compares their inodes), then reflinks it to the
// dirty image.
func (s *Store) startSnapshot(p Paths, spec Spec) error {
	src, err := s.sourcePaths(spec)
	if err != nil {
		return err
	}
	if err := s.files.mkdirAll(p.Dir); err != nil {
		return err
	}
	if _, err := s.files.remove(p.Clean); err != nil {
		return err
	}
	if err := s.files.link(src.Clean, p.Clean); err != nil {
		return err
	}
	failpoint.Hit("start.after-snapshot-link")
	return s.copyFile(p.Clean, p.Dirty, copyOptions{})
}

// Stop commits an origin volume's dirty image, or discards the dirty image
// of any other kind. It is idempotent: a clean volume is left as it is.
func (s *Store) Stop(spec Spec) (State, error) {
	var st State
	err := s.volumeOp("stop", spec, func(p Paths) error {
		dirty, err := s.isDirty(p, spec)
		if err != nil {
			return err
		}
		switch {
		case dirty && spec.SnapshotsDisabled():
			if _, err := s.files.statDirty(p.Dirty, spec); err != nil {
				return err
			}
			if err := s.files.rename(p.Dirty, p.Clean); err != nil {
				return err
			}
			s.log.Info("stopped volume without snapshot", "vid", spec.VID)
			// The VM's data is now the volume's committed data: the pool
			// may optimize it, and retry a job the start held.
			s.hooks.Committed(Committed{VID: spec.VID, Clean: p.file(CleanFile)})
		case dirty:
			if err := s.commit(p, spec, p.Dirty); err != nil {
				return err
			}
		case spec.Kind() != Origin:
			if err := s.discard(p, &spec); err != nil {
				return err
			}
		}
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

// discard drops a non-origin volume's images. A volatile volume keeps its
// dirty image's size as its recorded size, so a manual resize survives.
func (s *Store) discard(p Paths, spec *Spec) error {
	if spec.Kind() == Volatile {
		if info, err := s.files.stat(p.Dirty); err == nil {
			spec.Size = info.Size()
		}
	}
	removedDirty, err := s.files.remove(p.Dirty)
	if err != nil {
		return err
	}
	removedClean, err := s.files.remove(p.Clean)
	if err != nil {
		return err
	}
	if removedDirty || removedClean {
		s.log.Info("discarded volume", "vid", spec.VID, "kind", spec.Kind())
	}
	return nil
}

// Info reports the volume's state without changing anything.
func (s *Store) Info(spec Spec) (State, error) {
	var st State
	err := s.volumeOp("query", spec, func(p Paths) error {
		var err error
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

func (s *Store) sourcePaths(spec Spec) (Paths, error) {
	if spec.Source == "" {
		return Paths{}, fmt.Errorf("%w: snapshot volume has no source", ErrNotSupported)
	}
	return PathsFor(spec.Source)
}

func (s *Store) isDirty(p Paths, spec Spec) (bool, error) {
	if !spec.SaveOnStop {
		return false, nil
	}
	return s.files.exists(p.Dirty)
}

// state reads the volume's size, usage, dirtiness and revisions the way
// file-reflink reports them: from the dirty image, else the clean one,
// else the recorded size.
func (s *Store) state(p Paths, spec Spec) (State, error) {
	st := State{Size: spec.Size}
	for _, name := range []string{p.Dirty, p.Clean} {
		info, err := s.files.stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return State{}, err
		}
		st.Size, st.Usage = info.Size(), allocated(info)
		break
	}
	var err error
	if st.Dirty, err = s.isDirty(p, spec); err != nil {
		return State{}, err
	}
	st.Revisions, err = s.revisions(p)
	return st, err
}

// removeAll deletes every file of the volume: its images, its revisions
// and whatever else its revision glob matches (a revision number that is
// no id of ours is not listed, but must not keep the directory alive).
func (s *Store) removeAll(p Paths) error {
	if err := s.removeIncomplete(p); err != nil {
		return err
	}
	if err := s.pruneRevisions(p, 0); err != nil {
		return err
	}
	if err := s.removeRevisionLookalikes(p); err != nil {
		return err
	}
	failpoint.Hit("remove.after-revisions")
	for _, name := range []string{p.Clean, p.Precache, p.Dirty} {
		if _, err := s.files.remove(name); err != nil {
			return err
		}
	}
	return nil
}

// removeRevisionLookalikes deletes the files that match the volume's
// revision glob without being revisions it lists.
func (s *Store) removeRevisionLookalikes(p Paths) error {
	entries, err := s.files.readDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !p.matchesRevisionGlob(e.Name()) {
			continue
		}
		if _, err := s.files.remove(p.Dir + "/" + e.Name()); err != nil {
			return err
		}
		s.log.Info("removed file matching the revision glob", "path", s.files.abs(p.Dir+"/"+e.Name()))
	}
	return nil
}

// removeIncomplete deletes temp files and a pending import.
func (s *Store) removeIncomplete(p Paths) error {
	entries, err := s.files.readDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		base, _, temp := strings.Cut(name, "~")
		if temp && (p.ownsFile(name) || p.matchesRevisionGlob(base)) {
			if _, err := s.files.remove(p.Dir + "/" + name); err != nil {
				return err
			}
			s.log.Info("removed incomplete file", "path", s.files.abs(p.Dir+"/"+name))
		}
	}
	removed, err := s.files.remove(p.Import)
	if removed {
		s.log.Info("removed unfinished import", "path", s.files.abs(p.Import))
	}
	return err
}
