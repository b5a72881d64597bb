// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"errors"
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// MaxCompressedExtent is the most file data btrfs keeps in one compressed
// extent.
const MaxCompressedExtent = 128 << 10

// ErrEncodedWriteUnsupported means the kernel takes no encoded writes:
// older than 5.18, or the caller lacks CAP_SYS_ADMIN.
var ErrEncodedWriteUnsupported = errors.New("btrfs encoded writes unsupported")

// ZstdEncoder compresses file data into the zstd frames btrfs stores in
// compressed extents: one frame per extent, with a window no larger than
// the extent. Encode may be called from several goroutines at once.
type ZstdEncoder struct{ enc *zstd.Encoder }

// NewZstdEncoder returns an encoder at about the ratio of zstd level
// level, running up to concurrency encodings at once.
func NewZstdEncoder(level, concurrency int) *ZstdEncoder {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithWindowSize(MaxCompressedExtent),
		zstd.WithSingleSegment(true),
		zstd.WithEncoderConcurrency(max(concurrency, 1)))
	if err != nil {
		// Only invalid options fail, and these are fixed.
		panic(fmt.Sprintf("zstd encoder: %v", err))
	}
	return &ZstdEncoder{enc: enc}
}

// ZstdEncoderBytes is about the memory each of an encoder's concurrent
// encodings holds at level once used, most of it match tables the
// library sizes by level alone: from level 10 up they take 35 MiB, which
// a caller that bounds its memory has to make room for.
func ZstdEncoderBytes(level int) uint64 {
	switch {
	case level >= 10:
		return 36 << 20
	case level >= 6:
		return 6 << 20
	default:
		return 2 << 20
	}
}

// Encode appends to dst the frame of data, at most MaxCompressedExtent
// bytes.
func (e *ZstdEncoder) Encode(dst, data []byte) []byte {
	return e.enc.EncodeAll(data, dst)
}

// Saves reports whether a frame of data stored as an extent takes fewer
// sectors than data itself, the rule btrfs applies to its own compression.
func Saves(frame, data []byte) bool {
	return saves(uint64(len(frame)), uint64(len(data)))
}

func saves(frameLen, dataLen uint64) bool { return roundUp(frameLen) < roundUp(dataLen) }

func roundUp(n uint64) uint64 { return (n + sectorSize - 1) &^ (sectorSize - 1) }

// StoredBytes is the disk space an extent of n bytes takes: whole sectors.
func StoredBytes(n int) int { return int(roundUp(uint64(n))) }

// sectorSize is the alignment encoded writes need; btrfs's sector size is
// the page size, 4 KiB, on the machines this runs on.
const sectorSize = 4096

// WriteZstdExtent stores, at offset in f, length bytes of file data as
// one extent holding frame (from ZstdEncoder.Encode) as it is, without
// compressing anything in the kernel (BTRFS_IOC_ENCODED_WRITE). The kernel
// does not check the frame: a wrong one makes reads of the range fail or
// return other bytes, so only data whose placement is verified by a byte
// comparison afterwards (FIDEDUPERANGE) should come this way.
//
// offset must be sector-aligned and length at most MaxCompressedExtent and
// sector-aligned unless the write ends the file; the frame must Save. The
// extent's item is inserted when its write completes: call WriteBack
// before listing it with Extents.
func WriteZstdExtent(f *os.File, offset uint64, frame []byte, length uint64) error {
	errorf := func(format string, args ...any) error {
		return fmt.Errorf("encoded write to %s at %d, %d bytes: "+format,
			append([]any{f.Name(), offset, length}, args...)...)
	}
	if offset%sectorSize != 0 || length == 0 || length > MaxCompressedExtent || len(frame) == 0 ||
		!saves(uint64(len(frame)), length) {
		return errorf("%w", unix.EINVAL)
	}
	err := iocEncodedWrite(f, offset, length, frame, btrfsEncodedIOCompressionZstd)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EPERM), errors.Is(err, unix.EOPNOTSUPP):
		return errorf("%w: %w", ErrEncodedWriteUnsupported, err)
	default:
		return errorf("%w", err)
	}
}
