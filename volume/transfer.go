// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
	"github.com/btrfs-vdo/btrfs-vdo/internal/loopdev"
)

// Resize sets the volume's size. A dirty image (the VM is running) is
// truncated in place and the loop devices backed by it are told; a stopped
// origin volume gets a resized reflink of its clean image as a new inode,
// so its revisions keep their size; any other volume only records the size.
func (s *Store) Resize(spec Spec, size int64) (State, error) {
	var st State
	err := s.volumeOp("resize", spec, func(p Paths) error {
		if !spec.RW {
			return ErrReadOnly
		}
		if size < 0 {
			return fmt.Errorf("%w: negative size %d", ErrInvalidName, size)
		}
		err := s.resizeDirty(p, spec, size)
		switch {
		case errors.Is(err, fs.ErrNotExist) && spec.Kind() == Origin:
			err = s.refreshPrecache(p, spec, func() error {
				defer failpoint.Hit("resize.stopped-after-reflink")
				return s.copyFile(p.Clean, p.Clean, copyOptions{size: &size})
			})
		case errors.Is(err, fs.ErrNotExist):
			err = nil
		}
		if err != nil {
			return err
		}
		s.log.Info("resized volume", "vid", spec.VID, "size", size)
		spec.Size = size
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

func (s *Store) resizeDirty(p Paths, spec Spec, size int64) error {
	f, err := s.files.root.OpenFile(p.Dirty, os.O_RDWR|noFollow, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.files.abs(p.Dirty), err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if err := s.files.checkDirtyLinks(p.Dirty, info, spec); err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s to %d: %w", f.Name(), size, err)
	}
	failpoint.Hit("resize.running-after-truncate")
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	n, err := loopdev.RefreshCapacity(f.Name())
	if err != nil {
		return err
	}
	s.log.Debug("refreshed loop devices", "path", f.Name(), "count", n)
	return nil
}

// Export returns the absolute path of the committed image, which stays
// valid while the VM runs: a commit renames a new inode over the name and
// leaves an open reader on the old one.
func (s *Store) Export(spec Spec) (string, error) {
	var path string
	err := s.volumeOp("export", spec, func(p Paths) error {
		if spec.Kind() != Origin {
			return fmt.Errorf("%w: only save_on_stop volumes can be exported", ErrNotSupported)
		}
		_, err := s.files.stat(p.Clean)
		if errors.Is(err, fs.ErrNotExist) && spec.SnapshotsDisabled() {
			return fmt.Errorf("has no committed image while it runs with snapshots disabled: %w", fs.ErrNotExist)
		}
		if err != nil {
			return err
		}
		path = s.files.abs(p.Clean)
		return nil
	})
	return path, err
}

// ExportEnd ends an export. Export hands out the clean image itself, so
// there is nothing to release.
func (s *Store) ExportEnd(spec Spec) (State, error) {
	return s.Info(spec)
}

// ImportData creates an empty sparse import image of exactly size bytes,
// which reads as zeros, for qubesd to write into with dd conv=sparse.
func (s *Store) ImportData(spec Spec, size int64) (string, error) {
	var path string
	err := s.volumeOp("import data", spec, func(p Paths) error {
		if spec.Kind() != Origin {
			return fmt.Errorf("%w: only save_on_stop volumes can be imported into", ErrNotSupported)
		}
		if size < 0 {
			return fmt.Errorf("%w: negative size %d", ErrInvalidName, size)
		}
		if err := s.files.mkdirAll(p.Dir); err != nil {
			return err
		}
		if err := s.files.createSparse(p.Import, size); err != nil {
			return err
		}
		s.log.Info("created import image", "vid", spec.VID, "size", size)
		path = s.files.abs(p.Import)
		return nil
	})
	return path, err
}

// ImportDataEnd commits a finished import like a shutdown commits, taking a
// revision, or discards a failed one.
func (s *Store) ImportDataEnd(spec Spec, success bool) (State, error) {
	var st State
	err := s.volumeOp("finish import", spec, func(p Paths) error {
		if spec.Kind() != Origin {
			return fmt.Errorf("%w: only save_on_stop volumes can be imported into", ErrNotSupported)
		}
		var err error
		if success {
			err = s.commit(p, spec, p.Import)
		} else if _, err = s.files.remove(p.Import); err == nil {
			s.log.Info("discarded import", "vid", spec.VID)
		}
		if err != nil {
			return err
		}
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

// ImportVolume copies the committed data at source (another volume's
// export, of any driver) into the import image, by reflink within one
// filesystem and by sparse copy across, then commits it. Volumes that are
// not save_on_stop have nothing to import. The copy stops when ctx is
// done (the daemon is stopping), leaving the volume as it was.
//
// source must be a regular file or a block device. The contract lets an
// export be a pipe too, but the import takes the source's size and copies
// it sparsely by offset, which a pipe cannot give; and opening a pipe
// waits for its writer, holding the volume's lock for as long. So a pipe
// (or socket, or character device) is refused, and it is opened without
// blocking to find out.
func (s *Store) ImportVolume(ctx context.Context, spec Spec, source string) (State, error) {
	var st State
	err := s.volumeOp("import volume", spec, func(p Paths) error {
		if spec.Kind() == Origin {
			if err := s.importFrom(ctx, p, source); err != nil {
				_, _ = s.files.remove(p.Import)
				return err
			}
			failpoint.Hit("import-volume.before-commit")
			if err := s.commit(p, spec, p.Import); err != nil {
				return err
			}
		}
		var err error
		st, err = s.state(p, spec)
		return err
	})
	return st, err
}

func (s *Store) importFrom(ctx context.Context, p Paths, source string) error {
	in, err := openSource(source)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := s.files.mkdirAll(p.Dir); err != nil {
		return err
	}
	var reflinked bool
	err = s.files.replace(p.Import, zeroTime, func(tmp *os.File) error {
		var err error
		reflinked, err = cloneOrCopy(ctx, tmp, in)
		if err != nil {
			return fmt.Errorf("copy %s to %s: %w", source, tmp.Name(), err)
		}
		failpoint.Hit("import-volume.after-copy")
		return nil
	})
	if err == nil {
		s.log.Info("imported volume data", "source", source, "to", s.files.abs(p.Import), "reflinked", reflinked)
	}
	return err
}

// openSource opens an import source without blocking (a pipe would wait
// for a writer) and refuses anything but a regular file or a block device.
func openSource(source string) (*os.File, error) {
	fd, err := unix.Open(source, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open source: %w", &fs.PathError{Op: "open", Path: source, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat source: %w", &fs.PathError{Op: "stat", Path: source, Err: err})
	}
	if kind := st.Mode & unix.S_IFMT; kind != unix.S_IFREG && kind != unix.S_IFBLK {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: source %s is not a regular file or a block device", ErrNotSupported, source)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("source %s: %w", source, err)
	}
	return os.NewFile(uintptr(fd), source), nil
}
