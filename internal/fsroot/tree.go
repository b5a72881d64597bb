// SPDX-License-Identifier: GPL-2.0-or-later

package fsroot

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// noFollow resolves a name beneath a directory through no symlink at all
// and on no other filesystem: what RemoveAll descends into.
const noFollow = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV

// OpenRoot opens the directory name beneath r as a root of its own. name
// itself must be a directory, not a symlink to one.
func (r *Root) OpenRoot(name string) (*Root, error) {
	fd, st, err := r.openSubdir(name)
	if err != nil {
		return nil, err
	}
	return &Root{fd: fd, name: r.join(name), dev: uint64(st.Dev), ino: st.Ino, parent: r, base: name}, nil
}

// openSubdir opens the directory name beneath r, refusing a symlink, for
// a root of its own.
func (r *Root) openSubdir(name string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := r.openat2(name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		if err = unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return -1, st, &fs.PathError{Op: "open root", Path: r.join(name), Err: err}
	}
	return fd, st, nil
}

// LinkFile gives the open file f, made with O_TMPFILE or unlinked, the
// name newname, which must not exist.
func (r *Root) LinkFile(f *os.File, newname string) error {
	return r.inParent("link", newname, func(dirfd int, base string) error {
		return unix.Linkat(int(f.Fd()), "", dirfd, base, unix.AT_EMPTY_PATH)
	})
}

// SyncDir makes the root directory's entries durable.
func (r *Root) SyncDir() error {
	d, err := r.OpenFile(".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &fs.PathError{Op: "fsync", Path: r.name, Err: err}
	}
	return nil
}

// RemoveAll removes name and, if it is a directory, everything beneath
// it, through directory descriptors: a symlink is removed, never followed
// or descended into, and nothing on another filesystem is touched. A
// missing name is no error.
func (r *Root) RemoveAll(name string) error {
	return r.inParent("remove all", name, func(dirfd int, base string) error {
		err := removeTree(dirfd, base)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	})
}

// removeTree removes base in the directory dirfd, emptying it first when
// it is a directory.
func removeTree(dirfd int, base string) error {
	err := unix.Unlinkat(dirfd, base, 0)
	if err != unix.EISDIR {
		return err
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: noFollow}
	fd, err := unix.Openat2(dirfd, base, &how)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), base)
	defer d.Close()
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			if err := removeTree(fd, n); err != nil && err != unix.ENOENT {
				return err
			}
		}
		if err != nil || len(names) == 0 {
			break
		}
		// Entries were removed while reading: read the directory anew.
		if _, err := d.Seek(0, 0); err != nil {
			return err
		}
	}
	return unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
}

// ErrNotOwnFile means a name holds something other than a regular file
// with a single link: a symlink, a FIFO, a directory, or a file with other
// names, which writing it in place would change too.
var ErrNotOwnFile = errors.New("not a regular file of its own")

// OpenOwnFile opens name beneath r without following a symlink and
// without blocking on a FIFO, and refuses anything but a regular file with
// a single link (ErrNotOwnFile).
func (r *Root) OpenOwnFile(name string, flag int) (*os.File, error) {
	f, err := r.OpenFile(name, flag|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENXIO) || errors.Is(err, ErrNotFileOrDir) {
		return nil, &fs.PathError{Op: "open", Path: r.join(name), Err: ErrNotOwnFile}
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: f.Name(), Err: ErrNotOwnFile}
	}
	return f, nil
}
