// SPDX-License-Identifier: GPL-2.0-or-later

package compress

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// FileProgress reports Files' progress: the file being worked on and the
// logical bytes of uncompressed extents examined so far.
type FileProgress func(path string, examined uint64)

// FilesResult is what Files did.
type FilesResult struct {
	Result
	// Skipped lists the files left as they were, in the order met.
	Skipped []SkippedFile
}

// SkippedFile is a file Files could not compress, and why.
type SkippedFile struct {
	Path   string
	Reason string
}

// Files compresses dom0's own files in place, the way the optimizer
// compresses images: every uncompressed extent that only its file
// references is rewritten with zstd by a range defrag; shared extents
// (reflinks, snapshots) are left alone, so nothing is unshared. Each file
// also loses the NOCOMPRESS flag and gains the zstd property, so its later
// writes are compressed too. Directories are walked without following
// symlinks or leaving their filesystem. Files not on btrfs are skipped,
// and so are files it cannot compress (see skipReason), which it lists.
// Running it again only examines what is still uncompressed, so an
// interrupted run is resumed by running it again.
func Files(ctx context.Context, paths []string, level int, progress FileProgress) (FilesResult, error) {
	w := NewRewriter(level, func(error) {}, nil, nil)
	var res FilesResult
	for _, root := range paths {
		rootDev, err := deviceOf(root)
		if err != nil {
			return res, err
		}
		if err := syncFilesystem(root); err != nil {
			return res, err
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && path != root {
				return nil // removed meanwhile: nothing left to compress
			}
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if d.IsDir() {
				if dev, err := deviceOf(path); err != nil || dev != rootDev {
					return errors.Join(err, fs.SkipDir)
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			r, err := w.compressFile(path)
			res.Add(r)
			progress(path, res.BytesExamined)
			if reason := skipReason(err); reason != "" {
				res.Skipped = append(res.Skipped, SkippedFile{Path: path, Reason: reason})
				return nil
			}
			return err
		})
		if err != nil {
			return res, fmt.Errorf("compress %s: %w", root, err)
		}
	}
	return res, nil
}

// syncFilesystem writes delalloc out, so that freshly written data has
// extents to examine.
func syncFilesystem(path string) error {
	if ok, err := btrfs.IsBtrfs(path); err != nil || !ok {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	return btrfs.Sync(f)
}

func deviceOf(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Dev, nil
}

// compressFile compresses one file's exclusive uncompressed extents.
func (w *Rewriter) compressFile(path string) (Result, error) {
	if ok, err := btrfs.IsBtrfs(path); err != nil || !ok {
		return Result{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	if errors.Is(err, syscall.ETXTBSY) || errors.Is(err, fs.ErrPermission) {
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	}
	if err != nil {
		return Result{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	flags, err := btrfs.Flags(f)
	if err != nil {
		return Result{}, err
	}
	if err := checkCompressible(flags); err != nil {
		return Result{}, err
	}
	if err := MarkCompressible(f, flags); err != nil {
		return Result{}, err
	}
	info, err := f.Stat()
	if err != nil || info.Size() == 0 {
		return Result{}, err
	}
	// Shared extents are left alone: who else references them is unknown.
	return w.Rewrite(f, Range{Length: uint64(info.Size())}, DefaultMinSaving, func(pc btrfs.Extent) (Result, error) {
		return Result{SkippedShared: pc.Length}, nil
	})
}

// notCompressible is a file's flag that rules out compressing it in
// place.
type notCompressible string

func (e notCompressible) Error() string { return string(e) }

// checkCompressible refuses a file whose flags leave nothing to do or
// forbid what compressing does: a no-COW file is never compressed, and an
// immutable or append-only one can be given neither the property nor new
// extents.
func checkCompressible(flags uint32) error {
	switch {
	case flags&btrfs.FlagNoCOW != 0:
		return notCompressible("no-COW (chattr +C), which btrfs never compresses")
	case flags&btrfs.FlagImmutable != 0:
		return notCompressible("immutable (chattr +i)")
	case flags&btrfs.FlagAppend != 0:
		return notCompressible("append-only (chattr +a)")
	}
	return nil
}

// skipReason says why a file that failed with err is skipped rather than
// stopping the run, or "" when err must stop it.
func skipReason(err error) string {
	var nc notCompressible
	switch {
	case errors.As(err, &nc):
		return string(nc)
	case errors.Is(err, syscall.ETXTBSY), errors.Is(err, syscall.EBUSY):
		return "in use (a running program or a swap file): " + err.Error()
	case errors.Is(err, fs.ErrNotExist):
		return "removed while it was being compressed"
	}
	return ""
}

// MarkCompressible clears the NOCOMPRESS flag btrfs sets on a file after
// one poorly compressing sample, which would otherwise keep it from ever
// being compressed again, and gives the file the zstd compression
// property, so that its later writes are compressed as they are written.
// flags are f's inode flags, as the caller read them.
func MarkCompressible(f *os.File, flags uint32) error {
	if flags&btrfs.FlagNoCompress != 0 {
		if err := btrfs.SetFlags(f, flags&^btrfs.FlagNoCompress); err != nil {
			return err
		}
	}
	return SetZstdProperty(f)
}

// SetZstdProperty gives f (a file or a directory) the zstd compression
// property unless it has it: setting it again would still take a
// transaction and change f's ctime.
func SetZstdProperty(f *os.File) error {
	algo, err := btrfs.CompressionProperty(f)
	if err != nil || algo == "zstd" {
		return err
	}
	return btrfs.SetCompressionProperty(f, "zstd")
}
