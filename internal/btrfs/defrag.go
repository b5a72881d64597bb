// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// ErrLevelUnsupported is wrapped by DefragCompress when the kernel rejected
// a compression level (kernels before 6.15 lack the COMPRESS_LEVEL flag).
// Callers can retry with level 0 and log that the level was dropped.
var ErrLevelUnsupported = errors.New("kernel does not support a defrag compression level")

// defragTries bounds the retries of a defrag interrupted by a signal. The
// kernel gives up on defrag whenever the calling thread has a signal
// pending, and the Go runtime's preemption signal can land on the thread
// just as it enters the ioctl; a retry almost always goes through.
const defragTries = 10

// DefragCompress rewrites [offset, offset+length) of f compressed with
// zstd at the given level (0 means the kernel's default level). Every
// extent in the range is rewritten, whatever its size; the rest of the file
// is not touched.
//
// The kernel treats this as best effort: it skips pieces it cannot take
// right now (dirty or in-flight data), and when a signal interrupts it
// after some progress it stops and reports success. So check the result
// with Extents (pieces still pointing at their old DiskBytenr were left as
// they were) and call again for those. An interruption before any
// progress (EAGAIN) is retried here.
//
// Rewriting unshares: a range that is also referenced by a reflinked or
// snapshotted file ends up stored twice. Use it only on extents nothing
// else references.
//
// The kernel only starts writeback of the new extents; call WriteBack
// before reading them back with Extents. A zero length does nothing (the
// kernel would take it as "to the end of the file").
func DefragCompress(f *os.File, offset, length uint64, level int) error {
	if length == 0 {
		return nil
	}
	errorf := func(format string, args ...any) error {
		return fmt.Errorf("compress %s offset %d length %d level %d: "+format,
			append([]any{f.Name(), offset, length, level}, args...)...)
	}
	// On overflow the kernel defragments the whole file, which would unshare
	// everything.
	if offset+length < offset {
		return errorf("range overflows: %w", unix.EINVAL)
	}
	if level < math.MinInt8 || level > math.MaxInt8 {
		return errorf("level out of range: %w", unix.EINVAL)
	}
	args := btrfs_ioctl_defrag_range_args{
		start:         offset,
		len:           length,
		flags:         btrfsDefragRangeCompress | btrfsDefragRangeStartIO,
		extent_thresh: 1, // every extent is "too small": rewrite all
	}
	withLevel := level != 0
	if withLevel {
		args.flags |= btrfsDefragRangeCompressLevel
	}
	args.setCompress(CompressZstd, int8(level), withLevel)

	var err error
	for range defragTries {
		err = iocDefragRange(f, &args)
		if !errors.Is(err, unix.EAGAIN) {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case withLevel && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)):
		// Unknown flags give EOPNOTSUPP; some kernels answer EINVAL.
		return errorf("%w: %w", ErrLevelUnsupported, err)
	default:
		return errorf("%w", err)
	}
}
