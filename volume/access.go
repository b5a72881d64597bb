// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Locked is a stopped-or-running volume's files, reached under the
// volume's lock, for work that rewrites extents without changing data
// (compression, deduplication). It is valid only inside Store.Locked or
// Store.ReadLocked.
type Locked struct {
	s *Store
	p Paths
}

// Locked runs fn with vid's lock held, reporting the work to
// Hooks.Writing as op. fn must be short: a start of the same volume waits
// for it.
func (s *Store) Locked(vid, op string, fn func(*Locked) error) error {
	return s.locked(vid, op, true, fn)
}

// ReadLocked is Locked for work that changes no file (it lists extents or
// looks for a dirty image), which is not reported to Hooks.Writing: a
// shutdown need not wait for it.
func (s *Store) ReadLocked(vid string, fn func(*Locked) error) error {
	return s.locked(vid, "", false, fn)
}

func (s *Store) locked(vid, op string, writes bool, fn func(*Locked) error) error {
	p, err := PathsFor(vid)
	if err != nil {
		return err
	}
	unlock := s.locks.lock(vid)
	defer unlock()
	defer s.dirs.rlock(p.Dir)()
	if writes {
		defer s.hooks.Writing(op, vid)()
	}
	return fn(&Locked{s: s, p: p})
}

// Running reports whether the volume has a dirty image: the VM runs, or
// stopped without a commit. Its extents are then shared with the dirty
// image and must be left alone.
func (l *Locked) Running() (bool, error) {
	return l.s.files.exists(l.p.Dirty)
}

// Running is Locked.Running without the volume's lock, for work that
// only reads: the answer can be out of date as soon as it is given.
func (s *Store) Running(vid string) (bool, error) {
	p, err := PathsFor(vid)
	if err != nil {
		return false, err
	}
	return s.files.exists(p.Dirty)
}

// Clean is the clean image.
func (l *Locked) Clean() File { return l.p.file(CleanFile) }

// Precache is the precache.
func (l *Locked) Precache() File { return l.p.file(PrecacheFile) }

// Revisions lists the volume's revisions, oldest first.
func (l *Locked) Revisions() ([]File, error) {
	revs, err := l.s.revisions(l.p)
	if err != nil {
		return nil, err
	}
	files := make([]File, len(revs))
	for i, r := range revs {
		files[i] = l.p.revisionFile(r)
	}
	return files, nil
}

// Open opens the volume's clean image, precache or a revision, never
// through a symlink, and refuses a hard link to anything but the pool's
// images (see links.go): what is opened here gets its extents rewritten
// and its properties set.
func (l *Locked) Open(file File, flag int) (*os.File, error) {
	if file.vid != l.p.vid() || (file.kind != CleanFile && file.kind != PrecacheFile && file.kind != RevisionFile) {
		return nil, fmt.Errorf("%w: %s is not a file of %s", ErrInvalidName, file.name, l.p.vid())
	}
	name := file.name
	f, err := l.s.files.root.OpenFile(name, flag|noFollow, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", l.s.files.abs(name), err)
	}
	info, err := f.Stat()
	if err != nil {
		err = fmt.Errorf("stat %s: %w", l.s.files.abs(name), err)
	} else if file.kind == PrecacheFile {
		err = l.s.files.checkSingleLink(name, info)
	} else {
		err = l.s.files.checkLinksInPool(name, info)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenDir opens the volume's directory, to set properties that files
// created in it later inherit.
func (l *Locked) OpenDir() (*os.File, error) {
	d, err := l.s.files.root.Open(l.p.Dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", l.s.files.abs(l.p.Dir), err)
	}
	return d, nil
}

// MakePrecache reflinks the clean image of a stopped origin volume to its
// precache, with the same mtime, unless a valid precache exists. It is
// what a commit leaves for later when Hooks.Committed asked for it.
func (s *Store) MakePrecache(vid string) error {
	return s.Locked(vid, "precache", func(l *Locked) error {
		if running, err := l.Running(); err != nil || running {
			return err // a started volume has used or dropped its precache
		}
		if err := s.removeStalePrecache(l.p); errors.Is(err, fs.ErrNotExist) {
			return nil // no clean image: removed, or snapshots disabled and running
		} else if err != nil {
			return err
		}
		if ok, err := s.files.exists(l.p.Precache); err != nil || ok {
			return err
		}
		if err := s.copyFile(l.p.Clean, l.p.Precache, copyOptions{keepMtime: true}); err != nil {
			return opError("make precache", vid, err)
		}
		s.log.Info("made precache", "vid", vid)
		return nil
	})
}

// List returns the vids of the volumes that have a clean or a dirty image
// in the pool: templates first, so that their data is optimized before
// the AppVMs' that shares it.
func (s *Store) List() ([]string, error) {
	var vids []string
	for _, prefix := range TopDirs {
		vms, err := s.files.readDir(prefix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, vm := range vms {
			if !vm.IsDir() {
				continue
			}
			names, err := s.files.readDir(prefix + "/" + vm.Name())
			if err != nil {
				return nil, err
			}
			seen := map[string]bool{}
			for _, n := range names {
				vol, ok := volumeOfImage(n.Name())
				vid := prefix + "/" + vm.Name() + "/" + vol
				if ok && !seen[vid] && ValidateVID(vid) == nil {
					seen[vid] = true
					vids = append(vids, vid)
				}
			}
		}
	}
	return vids, nil
}

// volumeOfImage returns the volume whose clean or dirty image name is.
func volumeOfImage(name string) (string, bool) {
	if vol, ok := strings.CutSuffix(name, "-dirty.img"); ok {
		return vol, true
	}
	vol, ok := strings.CutSuffix(name, ".img")
	if !ok || strings.HasSuffix(vol, "-precache") || strings.HasSuffix(vol, "-import") {
		return "", false
	}
	return vol, true
}
