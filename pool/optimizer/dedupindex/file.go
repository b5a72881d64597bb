// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

// File is an index kept in a file: read whole by Open, written back in
// place, changed buckets only, by Flush.
type File struct {
	*Index
	path string     // for messages
	mu   sync.Mutex // serializes Flush, Close, Detach and Attach
	f    *os.File   // nil once closed or detached
	// left identifies the file as Detach left it: what Attach checks
	// before it takes the index in memory for the file's content.
	left *fileState
}

// fileState is what tells a file unchanged: the same inode, length and
// change time (which every write and rename moves).
type fileState struct {
	dev, ino     uint64
	size         int64
	ctime, mtime unix.Timespec
}

func stateOf(f *os.File) (fileState, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileState{}, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return fileState{dev: st.Dev, ino: st.Ino, size: st.Size, ctime: st.Ctim, mtime: st.Mtim}, nil
}

// Opened says how Open came by the index, for the caller to log.
type Opened struct {
	Created bool // no usable file: a fresh, empty index was written
	Resized bool // the file held another size; its cells were carried over
	// SetAside is where a corrupt file was moved (Created is then set),
	// and Corrupt why; it wraps ErrCorrupt.
	SetAside string
	Corrupt  error
	// Rewritten: the file was copy-on-write or preallocated and was
	// written anew to be overwritten in place (see noCOW).
	Rewritten bool
}

// Open loads the index at name beneath dir, or creates an empty one of
// size bytes. Nothing at name is followed or written through: a symlink, a
// FIFO or a file with other links there counts as corrupt. A corrupt file
// is renamed to name+".corrupt" and a fresh index started; a file of
// another size is converted. A new file is written whole as an unnamed
// O_TMPFILE file, synced, and only then linked in at name.
func Open(dir *fsroot.Root, name string, size uint64) (*File, Opened, error) {
	var how Opened
	path := dir.Name() + "/" + name
	// Older versions wrote a new file at this name before renaming it.
	if err := dir.RemoveAll(tempName(name)); err != nil {
		return nil, how, fmt.Errorf("remove leftover dedup index: %w", err)
	}
	x, f, err := load(dir, name, maxConvert*size)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		how.Created = true
		x, err = New(size)
	case errors.Is(err, ErrCorrupt):
		how = Opened{Created: true, SetAside: path + ".corrupt", Corrupt: err}
		if err = setAside(dir, name, name+".corrupt"); err != nil {
			return nil, how, fmt.Errorf("set corrupt dedup index aside: %w", err)
		}
		x, err = New(size)
	case err != nil:
		return nil, how, err
	case x.Size() == size && !notInPlace(f):
		return &File{Index: x, path: path, f: f}, how, nil
	case x.Size() == size:
		how.Rewritten = true
		f.Close()
	default:
		how.Resized = true
		f.Close()
		x, err = x.resized(size)
	}
	if err != nil {
		return nil, how, err
	}
	if f, err = create(dir, name, x); err != nil {
		return nil, how, err
	}
	return &File{Index: x, path: path, f: f}, how, nil
}

func tempName(name string) string { return name + ".new" }

// StoredSize returns the table size of the index file at name beneath
// dir, as its header and length agree on it; 0 when there is none or it
// is not an index.
func StoredSize(dir *fsroot.Root, name string) uint64 {
	f, err := dir.OpenOwnFile(name, os.O_RDONLY)
	if err != nil {
		return 0
	}
	defer f.Close()
	h := make([]byte, headerBytes)
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	if _, err := f.ReadAt(h, 0); err != nil {
		return 0
	}
	size, err := parseHeader(h)
	if err != nil || encodedLen(size) != fi.Size() {
		return 0
	}
	return size
}

// maxConvert bounds the file Open converts to the size asked for: a table
// of up to maxConvert times that size. A larger one is not what this
// daemon wrote for any recent configuration, and would take that much
// memory to read, so it is set aside as corrupt.
const maxConvert = 4

// setAside renames name to aside, replacing whatever aside holds; a
// directory at name, which no rename can replace it with, is removed.
func setAside(dir *fsroot.Root, name, aside string) error {
	if err := dir.RemoveAll(aside); err != nil {
		return err
	}
	return dir.Rename(name, aside)
}

// load reads the index at name beneath dir, of a table of at most limit
// bytes, and returns it with the file open for writing back. The table's
// size is checked against the file's length before it is read.
func load(dir *fsroot.Root, name string, limit uint64) (*Index, *os.File, error) {
	f, err := dir.OpenOwnFile(name, os.O_RDWR)
	if errors.Is(err, fsroot.ErrNotOwnFile) {
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open dedup index: %w", err)
	}
	path := f.Name()
	fi, err := f.Stat()
	var x *Index
	if err == nil {
		x, err = ReadFrom(bufio.NewReaderSize(f, chunkBuckets*bucketBytes), min(limit, tableBytesIn(fi.Size())))
	}
	// Bytes past the end mean the file is not what WriteTo wrote.
	if err == nil && fi.Size() != encodedLen(x.Size()) {
		err = fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, fi.Size(), encodedLen(x.Size()))
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("load dedup index %s: %w", path, err)
	}
	return x, f, nil
}

// create writes x whole to a new file at name beneath dir, durably, and
// returns it open for writing back. Until it is complete the file has no
// name: a crash leaves nothing behind, and no du of the pool meets a file
// that grows. The mode is 0600: the hashes tell which known blocks the
// pool's VMs hold.
func create(dir *fsroot.Root, name string, x *Index) (*os.File, error) {
	f, err := dir.OpenFile(".", os.O_RDWR|unix.O_TMPFILE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create dedup index: %w", err)
	}
	x.clean()
	err = noCOW(f)
	if err == nil {
		_, err = x.WriteTo(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = dir.RemoveAll(name)
	}
	if err == nil {
		err = dir.LinkFile(f, name)
	}
	if err == nil {
		err = dir.SyncDir()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create dedup index %s/%s: %w", dir.Name(), name, err)
	}
	return f, nil
}

// noCOW makes f, still empty, a file that is not copied on write, where
// the filesystem copies on write. Written whole, zeros included, its
// space is all taken when it is made, and a flush overwrites the changed
// buckets where they lie and never needs new space, so writing the index
// back cannot grow the pool, nor fail on a full disk. The file loses
// btrfs's checksums; the index has its own.
//
// The space is written, not preallocated: a flush into a preallocated
// extent splits it, and btrfs filesystem du (FIEMAP) walking a file whose
// extents split under it reported a 33.6 MB index as up to 31 GB.
func noCOW(f *os.File) error {
	flags, err := btrfs.Flags(f)
	if err == nil {
		err = btrfs.SetFlags(f, flags|btrfs.FlagNoCOW)
	}
	if err != nil && !unsupported(err) {
		return err
	}
	return nil
}

// notInPlace reports whether f is a file of a copy-on-write filesystem
// that a flush would not overwrite in place: one that lacks the no-COW
// flag, or has preallocated extents (both written before noCOW existed).
func notInPlace(f *os.File) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.BTRFS_SUPER_MAGIC {
		return false
	}
	flags, err := btrfs.Flags(f)
	if err != nil {
		return false
	}
	if flags&btrfs.FlagNoCOW == 0 {
		return true
	}
	extents, err := btrfs.Extents(f, 0)
	return err == nil && slices.ContainsFunc(extents, func(e btrfs.Extent) bool { return e.Type == btrfs.ExtentPrealloc })
}

// unsupported reports an error of a filesystem without inode flags, or
// without the no-COW one.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}

// Flush writes the buckets changed since the last flush in place and
// syncs the file, and returns how many bytes it wrote. A crash during a
// flush can tear the file; the next Open then detects it and starts
// afresh.
func (f *File) Flush() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flush()
}

func (f *File) flush() (int64, error) {
	if f.f == nil && f.left != nil {
		return 0, nil // written back as it was detached; only Attach changes it
	}
	if f.f == nil {
		return 0, fmt.Errorf("flush dedup index %s: %w", f.path, os.ErrClosed)
	}
	n, err := f.WriteDirty(f.f)
	if err == nil && n > 0 {
		err = f.f.Sync()
	}
	if err != nil {
		return n, fmt.Errorf("flush dedup index %s: %w", f.path, err)
	}
	return n, nil
}

// Close flushes and closes the file. The index stays usable in memory.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.flush()
	if f.f != nil {
		err = errors.Join(err, f.f.Close())
		f.f = nil
	}
	return err
}

// Detach flushes and closes the file but keeps the index in memory, for
// Attach to take up again without reading the file: what a pool does
// between jobs, so that its filesystem can be unmounted while the next
// job still finds the index ready. An index that cannot be written back
// stays attached.
func (f *File) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	if _, err := f.flush(); err != nil {
		return err
	}
	left, err := stateOf(f.f)
	if err != nil {
		return err
	}
	f.left = &left
	err = f.f.Close()
	f.f = nil
	return err
}

// Attach opens the file at name beneath dir again for a detached index,
// and reports whether it is the file as Detach left it. When it is not
// (written, replaced or gone since), the index in memory no longer says
// what the file holds, and the caller opens the file anew; f is then
// closed.
func (f *File) Attach(dir *fsroot.Root, name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f != nil {
		return true, nil
	}
	left := f.left
	f.left = nil
	file, err := dir.OpenOwnFile(name, os.O_RDWR)
	if err != nil {
		return false, nil // gone or not ours: Open decides what to do
	}
	now, err := stateOf(file)
	if err != nil || left == nil || now != *left {
		file.Close()
		return false, err
	}
	f.f = file
	return true, nil
}
