// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// copyBlock is the unit of the sparse copy: zero blocks of this size are
// left as holes, like `cp --sparse=always`.
const copyBlock = 4096

// copyChunk bounds the memory one copy uses.
const copyChunk = 1 << 20

// cloneOrCopy fills dst, an empty file, with src's data: a reflink when the
// filesystem allows it, otherwise a sparse byte copy, which stops when ctx
// is done. It reports whether it reflinked.
func cloneOrCopy(ctx context.Context, dst, src *os.File) (bool, error) {
	err := btrfs.Clone(dst, src)
	if err == nil {
		return true, nil
	}
	if !btrfs.CloneUnsupported(err) {
		return false, err
	}
	return false, sparseCopy(ctx, dst, src)
}

// sparseCopy copies src into dst without writing zero blocks, then sets
// dst's size to src's. src may be a regular file or a block device. It
// gives up between two chunks once ctx is done.
func sparseCopy(ctx context.Context, dst, src *os.File) error {
	size, err := src.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("size of %s: %w", src.Name(), err)
	}
	buf := make([]byte, copyChunk)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy of %s stopped at %d: %w", src.Name(), off, err)
		}
		dataOff, err := nextData(src, off)
		if err != nil {
			return err
		}
		if dataOff >= size {
			break
		}
		n, err := src.ReadAt(buf[:min(int64(len(buf)), size-dataOff)], dataOff)
		if n == 0 && err != nil {
			return fmt.Errorf("read %s at %d: %w", src.Name(), dataOff, err)
		}
		if err := writeNonZero(dst, buf[:n], dataOff); err != nil {
			return err
		}
		off = dataOff + int64(n)
	}
	if err := dst.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s to %d: %w", dst.Name(), size, err)
	}
	return nil
}

// nextData returns the offset of the first data at or after off, skipping
// holes where the source can say where they are.
func nextData(f *os.File, off int64) (int64, error) {
	next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	switch {
	case err == nil:
		return next, nil
	case errors.Is(err, unix.ENXIO): // no data after off
		return 1<<63 - 1, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return off, nil // block devices and old filesystems: read everything
	default:
		return 0, fmt.Errorf("seek data in %s at %d: %w", f.Name(), off, err)
	}
}

var zeroBlock = make([]byte, copyBlock)

func writeNonZero(dst *os.File, data []byte, off int64) error {
	for start := 0; start < len(data); start += copyBlock {
		block := data[start:min(start+copyBlock, len(data))]
		if bytes.Equal(block, zeroBlock[:len(block)]) {
			continue
		}
		if _, err := dst.WriteAt(block, off+int64(start)); err != nil {
			return fmt.Errorf("write %s at %d: %w", dst.Name(), off+int64(start), err)
		}
	}
	return nil
}
