// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// DedupeDest is one destination of Dedupe: the range of File starting at
// Offset that should come to share the source's extents.
type DedupeDest struct {
	File   *os.File
	Offset uint64
}

// maxDedupeDests is how many destinations one FIDEDUPERANGE takes: the
// argument (24 bytes + 32 per destination) must fit in a 4 KiB page.
const maxDedupeDests = (4096 - 24) / 32

// Dedupe makes each destination range share the extents of src's range
// [srcOffset, srcOffset+length), where the bytes are identical
// (FIDEDUPERANGE). The kernel compares the bytes itself, so a wrong guess
// costs time, never data.
//
// deduped[i] is how many bytes from the start of the range dests[i] now
// shares. It is length when the whole range matched. A destination whose
// bytes differ stops early with a smaller count and no error: differing is
// an ordinary answer. (The kernel compares in chunks and may already have
// shared a matching prefix of the failing chunk, which is harmless.)
//
// A destination the kernel refuses (another filesystem, bad alignment, a
// range past EOF, ...) stops too, and err names it; the other destinations
// carry on. An error of the call as a whole ends everything, with deduped
// holding the progress so far.
//
// Ranges must be sector-aligned except where they end at EOF. The calls
// are split to at most 127 destinations each and repeated until done,
// since the kernel handles at most 1 GiB (16 MiB on old kernels) per call.
//
// The kernel compares a page at a time, reading each uncached page on its
// own, and files sharing extents (reflinked revisions) each have a page
// cache of their own: the ranges are read ahead first (ReadAhead).
func Dedupe(src *os.File, srcOffset, length uint64, dests []DedupeDest) (deduped []uint64, err error) {
	ReadAhead(src, srcOffset, length)
	for _, d := range dests {
		ReadAhead(d.File, d.Offset, length)
	}
	deduped = make([]uint64, len(dests))
	active := make([]bool, len(dests))
	for i := range active {
		active[i] = length > 0
	}
	var errs []error
	for {
		batch := nextDedupeBatch(deduped, active)
		if len(batch) == 0 {
			return deduped, errors.Join(errs...)
		}
		done := deduped[batch[0]]
		arg := unix.FileDedupeRange{
			Src_offset: srcOffset + done,
			Src_length: length - done,
			Info:       make([]unix.FileDedupeRangeInfo, len(batch)),
		}
		for j, i := range batch {
			arg.Info[j].Dest_fd = int64(dests[i].File.Fd())
			arg.Info[j].Dest_offset = dests[i].Offset + done
		}
		err := iocDedupeRange(src, &arg)
		keepAlive(dests, batch)
		if err != nil {
			errs = append(errs, fmt.Errorf("dedupe %s offset %d length %d into %d destinations: %w",
				src.Name(), arg.Src_offset, arg.Src_length, len(batch), err))
			return deduped, errors.Join(errs...)
		}
		for j, i := range batch {
			info := arg.Info[j]
			if err := dedupeStatus(info); err != nil {
				errs = append(errs, fmt.Errorf("dedupe %s offset %d length %d into %s offset %d: %w",
					src.Name(), arg.Src_offset, arg.Src_length, dests[i].File.Name(), info.Dest_offset, err))
				active[i] = false
				continue
			}
			if info.Status == unix.FILE_DEDUPE_RANGE_DIFFERS {
				active[i] = false
				continue
			}
			deduped[i] += info.Bytes_deduped
			active[i] = deduped[i] < length
		}
	}
}

// errNoProgress reports a destination that matched but gained no bytes,
// which would otherwise loop forever (for example a range past EOF that
// the kernel shortened to nothing).
var errNoProgress = errors.New("kernel deduplicated 0 bytes")

// dedupeStatus turns a destination's result into an error, nil for SAME
// with progress and for DIFFERS.
func dedupeStatus(info unix.FileDedupeRangeInfo) error {
	switch {
	case info.Status < 0:
		return unix.Errno(-info.Status)
	case info.Status == unix.FILE_DEDUPE_RANGE_DIFFERS:
		return nil
	case info.Status != unix.FILE_DEDUPE_RANGE_SAME:
		return fmt.Errorf("unknown dedupe status %d", info.Status)
	case info.Bytes_deduped == 0:
		return errNoProgress
	}
	return nil
}

// ReadAhead starts reading n bytes of f at off into the page cache, in
// large requests, without waiting (FADV_WILLNEED). Failing only costs
// time, so it reports nothing.
func ReadAhead(f *os.File, off, n uint64) {
	_ = unix.Fadvise(int(f.Fd()), int64(off), int64(n), unix.FADV_WILLNEED)
	runtime.KeepAlive(f)
}

// nextDedupeBatch picks the active destinations that are furthest behind,
// all at the same progress so one call can serve them, at most
// maxDedupeDests of them.
func nextDedupeBatch(deduped []uint64, active []bool) []int {
	var batch []int
	for i, a := range active {
		switch {
		case !a:
		case len(batch) == 0 || deduped[i] < deduped[batch[0]]:
			batch = append(batch[:0], i)
		case deduped[i] == deduped[batch[0]] && len(batch) < maxDedupeDests:
			batch = append(batch, i)
		}
	}
	return batch
}

// keepAlive keeps the destination files of a call reachable until it has
// returned, since the argument holds only their descriptors.
func keepAlive(dests []DedupeDest, batch []int) {
	for _, i := range batch {
		runtime.KeepAlive(dests[i].File)
	}
}
