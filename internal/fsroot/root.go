// SPDX-License-Identifier: GPL-2.0-or-later

package fsroot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// resolve is how every name is looked up: beneath the root, through no
// symlink at all. A link that stays beneath the root is refused too: the
// file-reflink layout has none, and one planted from a VM's directory to
// another's would let an operation on one VM's volume change the other's
// files, which the per-volume lock does not serialize.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Root is a directory beneath which names are resolved. Its descriptor
// may be released while no lookup runs, so that the root does not keep
// its filesystem busy (umount); the next lookup opens the same directory
// again, or fails if another one stands at its path now.
type Root struct {
	name     string
	dev, ino uint64 // of the directory opened first
	// parent and base are set for a root opened with OpenRoot, which is
	// opened again beneath its parent as it was at first.
	parent *Root
	base   string

	mu    sync.Mutex
	fd    int // O_PATH descriptor of the root directory; -1 when released
	users int // lookups using fd
}

// Open opens the directory dir as a root. dir itself is resolved as any
// path is, from the caller's working directory.
func Open(dir string) (*Root, error) {
	fd, st, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	return &Root{fd: fd, name: dir, dev: uint64(st.Dev), ino: st.Ino}, nil
}

func openDir(dir string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		if err = unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return -1, st, &fs.PathError{Op: "open root", Path: dir, Err: err}
	}
	return fd, st, nil
}

// Name is the path the root was opened with.
func (r *Root) Name() string { return r.name }

// ID is the device and inode of the root's directory.
func (r *Root) ID() (dev, ino uint64) { return r.dev, r.ino }

// Close releases the root's descriptor.
func (r *Root) Close() error { return r.Release() }

// Release closes the root's descriptor unless a lookup uses it; the next
// lookup opens the directory again.
func (r *Root) Release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 || r.users > 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close root", Path: r.name, Err: err}
	}
	return nil
}

// acquire returns the root's descriptor, opening the directory again if
// it was released; ESTALE if another directory stands at its path now.
// Every acquire is followed by a release.
func (r *Root) acquire() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		fd, st, err := r.reopen()
		if err != nil {
			return -1, err
		}
		if uint64(st.Dev) != r.dev || st.Ino != r.ino {
			unix.Close(fd)
			return -1, &fs.PathError{Op: "open root", Path: r.name, Err: unix.ESTALE}
		}
		r.fd = fd
	}
	r.users++
	return r.fd, nil
}

// reopen opens the root's directory again: by its path, or for a root
// opened with OpenRoot, beneath its parent and not through a symlink.
func (r *Root) reopen() (int, unix.Stat_t, error) {
	if r.parent == nil {
		return openDir(r.name)
	}
	return r.parent.openSubdir(r.base)
}

func (r *Root) release() {
	r.mu.Lock()
	r.users--
	r.mu.Unlock()
}

// OpenFile opens name beneath the root with flag and perm as os.OpenFile
// takes them. O_NOFOLLOW in flag refuses a symlink as the last component.
func (r *Root) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	var mode uint64
	if flag&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		mode = uint64(perm.Perm()) // openat2 refuses a mode it would not use
	}
	if flag&unix.O_PATH != 0 { // opens nothing, so it cannot block
		fd, err := r.openat2(name, uint64(flag)|unix.O_CLOEXEC, mode)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: r.join(name), Err: err}
		}
		return os.NewFile(uintptr(fd), r.join(name)), nil
	}
	// Opened without blocking, so that a FIFO planted at name cannot hold
	// the caller (and the volume's lock) until someone opens its other end.
	fd, err := r.openat2(name, uint64(flag)|unix.O_CLOEXEC|unix.O_NONBLOCK, mode)
	if err == unix.ENXIO { // a FIFO without a reader, opened for writing
		err = ErrNotFileOrDir
	}
	if err == nil {
		if err = fileOrDir(fd); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: r.join(name), Err: err}
	}
	return os.NewFile(uintptr(fd), r.join(name)), nil
}

// ErrNotFileOrDir is what OpenFile says of a FIFO, a socket or a device:
// nothing beneath a root the daemon works in is meant to be one.
var ErrNotFileOrDir = errors.New("not a regular file or a directory")

// fileOrDir refuses what fd opened unless it is a regular file or a
// directory, and makes fd blocking again for what it is.
func fileOrDir(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if mode := st.Mode & unix.S_IFMT; mode != unix.S_IFREG && mode != unix.S_IFDIR {
		return ErrNotFileOrDir
	}
	return unix.SetNonblock(fd, false)
}

// Open opens name beneath the root for reading.
func (r *Root) Open(name string) (*os.File, error) {
	return r.OpenFile(name, os.O_RDONLY, 0)
}

// Stat describes name, following a symlink that stays beneath the root.
func (r *Root) Stat(name string) (fs.FileInfo, error) {
	return r.stat("stat", name, 0)
}

// Lstat describes name itself, even when it is a symlink.
func (r *Root) Lstat(name string) (fs.FileInfo, error) {
	return r.stat("lstat", name, unix.O_NOFOLLOW)
}

func (r *Root) stat(op, name string, flag uint64) (fs.FileInfo, error) {
	fd, err := r.openat2(name, unix.O_PATH|unix.O_CLOEXEC|flag, 0)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: r.join(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), r.join(name))
	defer f.Close()
	return f.Stat()
}

// Mkdir creates the directory name.
func (r *Root) Mkdir(name string, perm fs.FileMode) error {
	return r.inParent("mkdir", name, func(dirfd int, base string) error {
		return unix.Mkdirat(dirfd, base, uint32(perm.Perm()))
	})
}

// Remove removes the file or empty directory name, never what a symlink
// there points to.
func (r *Root) Remove(name string) error {
	return r.inParent("remove", name, func(dirfd int, base string) error {
		err := unix.Unlinkat(dirfd, base, 0)
		if err == unix.EISDIR {
			err = unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
		}
		return err
	})
}

// Rename moves oldname to newname, replacing what newname names.
func (r *Root) Rename(oldname, newname string) error {
	return r.inParent("rename", oldname, func(olddir int, oldbase string) error {
		return r.inParent("rename", newname, func(newdir int, newbase string) error {
			return unix.Renameat(olddir, oldbase, newdir, newbase)
		})
	})
}

// Link makes newname a hard link to oldname, which is not followed.
func (r *Root) Link(oldname, newname string) error {
	return r.inParent("link", oldname, func(olddir int, oldbase string) error {
		return r.inParent("link", newname, func(newdir int, newbase string) error {
			return unix.Linkat(olddir, oldbase, newdir, newbase, 0)
		})
	})
}

// Chtimes sets the access and modification times of name itself.
func (r *Root) Chtimes(name string, atime, mtime time.Time) error {
	return r.inParent("chtimes", name, func(dirfd int, base string) error {
		ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
		return unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// inParent opens name's parent directory beneath the root and runs op on
// the descriptor and the last component.
func (r *Root) inParent(op, name string, fn func(dirfd int, base string) error) error {
	dir, base := path.Split(name)
	if base == "" || base == "." || base == ".." || strings.HasPrefix(name, "/") {
		return &fs.PathError{Op: op, Path: r.join(name), Err: unix.EINVAL}
	}
	if dir == "" {
		dir = "."
	}
	fd, err := r.openat2(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: op, Path: r.join(name), Err: err}
	}
	defer unix.Close(fd)
	if err := fn(fd, base); err != nil {
		return &fs.PathError{Op: op, Path: r.join(name), Err: err}
	}
	return nil
}

// openat2 opens name beneath the root. The kernel answers EAGAIN when a
// rename or mount elsewhere raced with the lookup, so that is retried a
// bounded number of times.
func (r *Root) openat2(name string, flags, mode uint64) (int, error) {
	if name == "" {
		return -1, unix.ENOENT
	}
	root, err := r.acquire()
	if err != nil {
		return -1, err
	}
	defer r.release()
	how := unix.OpenHow{Flags: flags, Mode: mode, Resolve: resolve}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(root, name, &how)
		switch {
		case (err == unix.EAGAIN && try < maxRetries) || err == unix.EINTR:
			continue
		case err == unix.EXDEV:
			return -1, fmt.Errorf("%w: path escapes from the root", unix.EXDEV)
		}
		return fd, err
	}
}

// maxRetries bounds the lookups retried after a racing rename; each retry
// is a fresh path walk, so a few are plenty unless something renames in a
// loop.
const maxRetries = 16

func (r *Root) join(name string) string { return path.Join(r.name, name) }
