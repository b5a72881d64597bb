package dedupindex

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// File is an index kept in a file: read whole by Open, written back in
// place, changed buckets only, by Flush.
type File struct {
	*Index
	path string
	mu   sync.Mutex // serialises Flush and Close
	f    *os.File   // nil once closed
}

// Opened says how Open came by the index, for the caller to log.
type Opened struct {
	Created bool // no usable file: a fresh, empty index was written
	Resized bool // the file held another size; its cells were carried over
	// SetAside is where a corrupt file was moved (Created is then set),
	// and Corrupt why; it wraps ErrCorrupt.
	SetAside string
	Corrupt  error
	// Rewritten: the file was copy-on-write and was written anew to be
	// overwritten in place (see inPlace).
	Rewritten bool
}

// Open loads the index at path, or creates an empty one of size bytes. A
// corrupt file is renamed to path+".corrupt" and a fresh index started; a
// file of another size is converted. A new file is written whole to a
// temporary file, synced and renamed into place.
func Open(path string, size uint64) (*File, Opened, error) {
	var how Opened
	if err := os.Remove(tempPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, how, fmt.Errorf("remove leftover dedup index: %w", err)
	}
	x, f, err := load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		how.Created = true
		x, err = New(size)
	case errors.Is(err, ErrCorrupt):
		how = Opened{Created: true, SetAside: path + ".corrupt", Corrupt: err}
		if err = os.Rename(path, how.SetAside); err != nil {
			return nil, how, fmt.Errorf("set corrupt dedup index aside: %w", err)
		}
		x, err = New(size)
	case err != nil:
		return nil, how, err
	case x.Size() == size && !copyOnWrite(f):
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
	if f, err = create(path, x); err != nil {
		return nil, how, err
	}
	return &File{Index: x, path: path, f: f}, how, nil
}

func tempPath(path string) string { return path + ".new" }

// load reads the index at path and returns it with the file open for
// writing back.
func load(path string) (*Index, *os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open dedup index: %w", err)
	}
	x, err := ReadFrom(bufio.NewReaderSize(f, chunkBuckets*bucketBytes))
	if err == nil {
		// Bytes past the end mean the file is not what WriteTo wrote.
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.Size() != encodedLen(x.Size()) {
			err = fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, fi.Size(), encodedLen(x.Size()))
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("load dedup index %s: %w", path, err)
	}
	return x, f, nil
}

// create writes x whole to a new file at path, durably, and returns it
// open for writing back. The mode is 0600: the hashes tell which known
// blocks the pool's VMs hold.
func create(path string, x *Index) (*os.File, error) {
	tmp := tempPath(path)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create dedup index: %w", err)
	}
	x.clean()
	if err := inPlace(f, encodedLen(x.Size())); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("create dedup index %s: %w", path, err)
	}
	if _, err = x.WriteTo(&zeroSkipper{f: f}); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("create dedup index %s: %w", path, err)
	}
	return f, nil
}

// inPlace makes f, still empty, size bytes long with all of its space
// allocated now and, where the filesystem copies on write, without
// copy-on-write: a flush then overwrites the changed buckets where they
// lie and never needs new space, so writing the index back cannot grow
// the pool, nor fail on a full disk. The file loses btrfs's checksums;
// the index has its own.
func inPlace(f *os.File, size int64) error {
	if flags, err := btrfs.Flags(f); err == nil {
		if err := btrfs.SetFlags(f, flags|btrfs.FlagNoCOW); err != nil && !unsupported(err) {
			return err
		}
	} else if !unsupported(err) {
		return err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return fmt.Errorf("allocate %d bytes for %s: %w", size, f.Name(), err)
	}
	return nil
}

// copyOnWrite reports whether f is a file of a copy-on-write filesystem
// that lacks the no-COW flag: one written before inPlace existed.
func copyOnWrite(f *os.File) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.BTRFS_SUPER_MAGIC {
		return false
	}
	flags, err := btrfs.Flags(f)
	return err == nil && flags&btrfs.FlagNoCOW == 0
}

// unsupported reports an error of a filesystem without inode flags, or
// without the no-COW one.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Flush writes the buckets changed since the last flush in place and
// syncs the file. A crash during a flush can tear the file; the next Open
// then detects it and starts afresh.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flush()
}

func (f *File) flush() error {
	if f.f == nil {
		return fmt.Errorf("flush dedup index %s: %w", f.path, os.ErrClosed)
	}
	n, err := f.WriteDirty(f.f)
	if err == nil && n > 0 {
		err = f.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("flush dedup index %s: %w", f.path, err)
	}
	return nil
}

// Close flushes and closes the file. The index stays usable in memory.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.flush()
	if f.f != nil {
		err = errors.Join(err, f.f.Close())
		f.f = nil
	}
	return err
}

// zeroSkipper writes at increasing offsets of f but skips runs of zeros:
// a new index is mostly empty buckets, and its file, allocated whole by
// inPlace, reads as zeros already.
type zeroSkipper struct {
	f   *os.File
	off int64
}

func (w *zeroSkipper) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != 0 {
			if _, err := w.f.WriteAt(p, w.off); err != nil {
				return 0, err
			}
			break
		}
	}
	w.off += int64(len(p))
	return len(p), nil
}
