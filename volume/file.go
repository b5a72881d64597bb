// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// File is one file of a volume: its clean, dirty, precache or import
// image, or one of its revisions. Only this package makes Files, from a
// valid vid, so a File always names a file of the layout beneath the pool
// directory; other packages hand it back to the Store to open it. The
// zero File names nothing and opens nothing.
type File struct {
	vid  string
	kind FileKind
	rev  Revision
	name string // relative to the pool directory
}

// FileKind is which of a volume's files a File is.
type FileKind int

// The files of a volume, as the package doc describes them.
const (
	CleanFile FileKind = iota + 1
	DirtyFile
	PrecacheFile
	ImportFile
	RevisionFile
)

func (k FileKind) String() string {
	switch k {
	case CleanFile:
		return "clean"
	case DirtyFile:
		return "dirty"
	case PrecacheFile:
		return "precache"
	case ImportFile:
		return "import"
	case RevisionFile:
		return "revision"
	}
	return "none"
}

// VID is the volume the file belongs to.
func (f File) VID() string { return f.vid }

// Kind is which of the volume's files f is.
func (f File) Kind() FileKind { return f.kind }

// Revision is the revision f holds; zero unless f is a RevisionFile.
func (f File) Revision() Revision { return f.rev }

// Name is f's name relative to the pool directory, as file-reflink names
// it: for messages and records, never to be opened by.
func (f File) Name() string { return f.name }

func (f File) String() string { return f.name }

// vid is the volume whose file names p holds.
func (p Paths) vid() string { return p.Dir + "/" + p.Name }

// file is p's file of kind; a revision needs revisionFile.
func (p Paths) file(kind FileKind) File {
	var name string
	switch kind {
	case CleanFile:
		name = p.Clean
	case DirtyFile:
		name = p.Dirty
	case PrecacheFile:
		name = p.Precache
	case ImportFile:
		name = p.Import
	default:
		return File{}
	}
	return File{vid: p.vid(), kind: kind, name: name}
}

// revisionFile is p's file of revision r.
func (p Paths) revisionFile(r Revision) File {
	return File{vid: p.vid(), kind: RevisionFile, rev: r, name: p.Revision(r.ID, r.Timestamp)}
}

// fileOf is the file of p that name, an entry of p.Dir, is: one of its
// images or revisions, but no temp file and no name that only looks like
// a revision.
func (p Paths) fileOf(name string) (File, bool) {
	for _, kind := range []FileKind{CleanFile, DirtyFile, PrecacheFile, ImportFile} {
		if f := p.file(kind); p.Dir+"/"+name == f.name {
			return f, true
		}
	}
	if id, ts, ok := p.parseRevision(name); ok {
		return p.revisionFile(Revision{ID: id, Timestamp: ts}), true
	}
	return File{}, false
}

// Files lists the files of vid that exist as regular files: its images
// and revisions, in directory order.
func (s *Store) Files(vid string) ([]File, error) {
	p, err := PathsFor(vid)
	if err != nil {
		return nil, err
	}
	entries, err := s.files.readDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []File
	for _, e := range entries {
		if f, ok := p.fileOf(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, f)
		}
	}
	return out, nil
}

// EachFile calls fn with every file of every volume the pool lists (see
// List), described as itself (a symlink is not followed). A file removed
// since it was listed, or that is no regular file, is left out. No lock is
// taken: a file may be replaced while fn runs.
func (s *Store) EachFile(fn func(File, fs.FileInfo) error) error {
	vids, err := s.List()
	if err != nil {
		return err
	}
	for _, vid := range vids {
		files, err := s.Files(vid)
		if err != nil {
			return err
		}
		for _, f := range files {
			info, err := s.Stat(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				continue
			}
			if err := fn(f, info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Open opens f read-only beneath the pool directory, never through a
// symlink, without the volume's lock: for reading what may change or go
// meanwhile. Only Locked.Open opens a file to write.
func (s *Store) Open(f File) (*os.File, error) {
	if f.name == "" {
		return nil, fmt.Errorf("%w: open of no file", ErrInvalidName)
	}
	file, err := s.files.root.OpenFile(f.name, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.files.abs(f.name), err)
	}
	return file, nil
}

// Stat describes f itself (a symlink is not followed), looked up beneath
// the pool directory.
func (s *Store) Stat(f File) (fs.FileInfo, error) {
	if f.name == "" {
		return nil, fmt.Errorf("%w: stat of no file", ErrInvalidName)
	}
	info, err := s.files.root.Lstat(f.name)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", s.files.abs(f.name), err)
	}
	return info, nil
}

// Path is f's absolute path, for messages: the file is opened through the
// Store, never by this name.
func (s *Store) Path(f File) string { return s.files.abs(f.name) }
