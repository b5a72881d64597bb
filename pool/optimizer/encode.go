// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// defaultZstdLevel stands for "the kernel's default level" (level 0) when
// compressing in userspace: btrfs's zstd default.
const defaultZstdLevel = 3

// copyEncoder compresses the data of compressed copies in userspace and
// writes it as compressed extents (encoded writes). The kernel's own
// compression would store uncompressed whatever its sampling heuristic
// misjudges (executables mixing code and tables), compress at the mount's
// level rather than the pool's, and use one CPU per 128 KiB at writeback.
// A wrong frame cannot reach a volume: copies reach volumes only by
// FIDEDUPERANGE, which compares the bytes.
type copyEncoder struct {
	enc *btrfs.ZstdEncoder
	// plain is set once the kernel refuses encoded writes: copies are then
	// written plainly, for btrfs to compress (they have the compression
	// property).
	plain    atomic.Bool
	onPlain  func(error)
	parallel int
	// minSaving is the share of a unit's bytes its frame must save for
	// the unit to be stored compressed (see DefaultMinCompressSaving).
	minSaving float64
	// arenas are the buffers frames are made in (*[]byte), reused from one
	// write to the next, so that a job's copies make no garbage.
	arenas sync.Pool
}

// newCopyEncoder returns an encoder at level (0: btrfs's default) that
// compresses what saves at least minSaving of its bytes (0:
// DefaultMinCompressSaving) on parallel CPUs at once (0: all). Level and
// saving are validated by the configuration; the zstd library maps any
// level to its nearest.
func newCopyEncoder(level int, minSaving float64, parallel int, onPlain func(error)) *copyEncoder {
	if level == 0 {
		level = defaultZstdLevel
	}
	if minSaving == 0 {
		minSaving = DefaultMinCompressSaving
	}
	if parallel == 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	return &copyEncoder{enc: btrfs.NewZstdEncoder(level, parallel), onPlain: onPlain, parallel: parallel,
		minSaving: minSaving}
}

// write stores data at off in f (sector-aligned), in order: each 128 KiB
// unit whose frame saves a sector and the encoder's minimum share as a
// compressed extent, the others plainly. The units are compressed on every
// CPU at once.
func (e *copyEncoder) write(f *os.File, data []byte, off uint64) error {
	if e.plain.Load() {
		return writePlain(f, data, off)
	}
	const unit = btrfs.MaxCompressedExtent
	n := (len(data) + unit - 1) / unit
	frames := make([][]byte, n)
	// Each unit's frame is made in its own slice of one arena: a frame
	// that outgrows its unit saves nothing and is dropped.
	buf, _ := e.arenas.Get().(*[]byte)
	if buf == nil || cap(*buf) < n*unit {
		b := make([]byte, n*unit)
		buf = &b
	}
	defer e.arenas.Put(buf)
	arena := (*buf)[:n*unit]
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(e.parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				u := data[i*unit : min((i+1)*unit, len(data))]
				if frame := e.enc.Encode(arena[i*unit:i*unit:(i+1)*unit], u); btrfs.Saves(frame, u) && e.savesEnough(len(frame), len(u)) {
					frames[i] = frame
				}
			}
		}()
	}
	wg.Wait()
	for i, frame := range frames {
		u := data[i*unit : min((i+1)*unit, len(data))]
		at := off + uint64(i*unit)
		if frame == nil || e.plain.Load() {
			if err := writePlain(f, u, at); err != nil {
				return err
			}
			continue
		}
		err := btrfs.WriteZstdExtent(f, at, frame, uint64(len(u)))
		if errors.Is(err, btrfs.ErrEncodedWriteUnsupported) {
			if !e.plain.Swap(true) {
				e.onPlain(err)
			}
			err = writePlain(f, u, at)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func writePlain(f *os.File, data []byte, off uint64) error {
	if _, err := f.WriteAt(data, int64(off)); err != nil {
		return fmt.Errorf("write compressed copy: %w", err)
	}
	return nil
}
