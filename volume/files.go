// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

// files performs durable file operations beneath one pool directory. Every
// name is relative to that directory and resolved through an fsroot.Root,
// which refuses ".." and symlinks leading outside it.
type files struct {
	root *fsroot.Root
}

// abs is the absolute path of name, for messages and for qubesd.
func (f files) abs(name string) string {
	return path.Join(f.root.Name(), name)
}

// mkdir creates dir (one level below the pool, or the pool's top dirs) and
// syncs its parent so the new entry survives a crash.
func (f files) mkdir(dir string) error {
	err := f.root.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		info, statErr := f.root.Stat(dir)
		if statErr == nil && info.IsDir() {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("create directory %s: %w", f.abs(dir), err)
	}
	return f.syncDir(path.Dir(dir))
}

// mkdirAll creates every missing directory of dir.
func (f files) mkdirAll(dir string) error {
	if dir == "." || dir == "/" {
		return nil
	}
	if err := f.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	return f.mkdir(dir)
}

// removeEmptyDir removes dir if it is empty; a directory that is gone
// already, or that is not empty (again), is left as it is.
func (f files) removeEmptyDir(dir string) error {
	entries, err := f.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) > 0) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.root.Remove(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("remove directory %s: %w", f.abs(dir), err)
	}
	return f.syncDir(path.Dir(dir))
}

func (f files) readDir(dir string) ([]fs.DirEntry, error) {
	d, err := f.root.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", f.abs(dir), err)
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", f.abs(dir), err)
	}
	return entries, nil
}

func (f files) syncDir(dir string) error {
	d, err := f.root.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", f.abs(dir), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", f.abs(dir), err)
	}
	return nil
}

func (f files) exists(name string) (bool, error) {
	_, err := f.root.Lstat(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("stat %s: %w", f.abs(name), err)
	}
}

// stat follows no symlink: pool images are regular files, and a planted
// link is treated as foreign.
func (f files) stat(name string) (fs.FileInfo, error) {
	info, err := f.root.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", f.abs(name), err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", f.abs(name), ErrInvalidName)
	}
	return info, nil
}

// rename moves src over dst and syncs the directory.
func (f files) rename(src, dst string) error {
	if err := f.root.Rename(src, dst); err != nil {
		return fmt.Errorf("rename %s to %s: %w", f.abs(src), f.abs(dst), err)
	}
	if err := f.syncDir(path.Dir(dst)); err != nil {
		return dirSyncError{err}
	}
	return nil
}

// dirSyncError is a rename that took place but whose directory could not
// be synced: undoing what led up to it would lose data the new name now
// holds.
type dirSyncError struct{ error }

func (e dirSyncError) Unwrap() error { return e.error }

// renamed tells whether a rename that returned err took place.
func renamed(err error) bool {
	var synced dirSyncError
	return err == nil || errors.As(err, &synced)
}

// remove deletes name; a missing file is not an error.
func (f files) remove(name string) (bool, error) {
	err := f.root.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove %s: %w", f.abs(name), err)
	}
	return true, f.syncDir(path.Dir(name))
}

// link hardlinks src to dst and syncs dst's directory.
func (f files) link(src, dst string) error {
	if err := f.root.Link(src, dst); err != nil {
		return fmt.Errorf("hardlink %s to %s: %w", f.abs(src), f.abs(dst), err)
	}
	return f.syncDir(path.Dir(dst))
}

// replace writes dst atomically: fill gets a new temp file next to dst,
// which is then synced, given mtime (unless zero) and renamed over dst.
// On any failure the temp file is removed and dst is untouched.
func (f files) replace(dst string, mtime time.Time, fill func(tmp *os.File) error) (err error) {
	tmpName := dst + "~" + randomSuffix()
	tmp, err := f.root.OpenFile(tmpName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", f.abs(tmpName), err)
	}
	defer func() {
		if err != nil {
			_ = f.root.Remove(tmpName)
		}
	}()
	if err = fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fsync %s: %w", f.abs(tmpName), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.abs(tmpName), err)
	}
	if !mtime.IsZero() {
		if err = f.root.Chtimes(tmpName, mtime, mtime); err != nil {
			return fmt.Errorf("set mtime of %s: %w", f.abs(tmpName), err)
		}
	}
	return f.rename(tmpName, dst)
}

// createSparse makes dst an empty sparse file of size bytes.
func (f files) createSparse(dst string, size int64) error {
	return f.replace(dst, zeroTime, func(tmp *os.File) error {
		if err := tmp.Truncate(size); err != nil {
			return fmt.Errorf("truncate %s to %d: %w", tmp.Name(), size, err)
		}
		return nil
	})
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// noFollow refuses a symlink as the last component of an opened name.
const noFollow = syscall.O_NOFOLLOW

// zeroTime leaves a replaced file's mtime as the write set it.
var zeroTime time.Time
