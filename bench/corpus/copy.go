// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// copyBuffer is the size of each write of a copy.
const copyBuffer = 1 << 20

// CopyTo copies the corpus into dir, a new directory on another btrfs,
// and returns the copy. Each image's data is written through that
// filesystem's mount with plain writes, holes left as holes, so the
// filesystem lays it out (and compresses it, if mounted so) as it would
// what a VM writes; every other file that is a reflink of an image here
// becomes a reflink of the image's copy, as file-reflink left it. An
// update round is not possible on the copy.
func (c *Corpus) CopyTo(dir string) (*Corpus, error) {
	images := make(map[string]string) // extent list of an image here: its copy
	for _, v := range c.Volumes {
		p, err := volume.PathsFor(v.VID)
		if err != nil {
			return nil, err
		}
		src, dst := c.Path(p.Clean), filepath.Join(dir, p.Clean)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("copy corpus: %w", err)
		}
		sig, err := extentSignature(src)
		if err != nil {
			return nil, err
		}
		if err := CopySparse(src, dst); err != nil {
			return nil, err
		}
		images[sig] = dst
	}
	err := filepath.WalkDir(c.Dir, func(src string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(c.Dir, src)
		if err != nil {
			return err
		}
		return copyOrReflink(src, filepath.Join(dir, rel), images)
	})
	if err != nil {
		return nil, fmt.Errorf("copy corpus %s to %s: %w", c.Dir, dir, err)
	}
	return &Corpus{Dir: dir, Opts: c.Opts, Volumes: c.Volumes}, nil
}

// copyOrReflink makes dst a reflink of the copy of the image src shares
// all its extents with, or else a copy of src; an image already copied
// is left alone.
func copyOrReflink(src, dst string, images map[string]string) error {
	sig, err := extentSignature(src)
	if err != nil {
		return err
	}
	img, ok := images[sig]
	switch {
	case ok && img == dst:
		return nil
	case ok:
		info, err := os.Stat(src)
		if err != nil {
			return err
		}
		return reflink(img, dst, info.ModTime())
	default:
		return CopySparse(src, dst)
	}
}

// extentSignature names the data extents of the file at path, in file
// order: two files with the same signature share all their data.
func extentSignature(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("list extents: %w", err)
	}
	defer f.Close()
	ext, err := btrfs.Extents(f, 0)
	if err != nil {
		return "", fmt.Errorf("list extents of %s: %w", path, err)
	}
	return fmt.Sprint(ext), nil
}

// CopySparse copies src's data regions into a new file dst of the same
// size and mtime, leaving holes as holes: new, unshared extents.
func CopySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	err = copyRegions(in, out, info.Size())
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(dst, info.ModTime(), info.ModTime())
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

func copyRegions(in, out *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, copyBuffer)
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil
		}
		if err != nil {
			return err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(io.NewOffsetWriter(out, start), io.NewSectionReader(in, start, end-start), buf); err != nil {
			return err
		}
		off = end
	}
	return nil
}
