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
	level    int
	parallel int
	// minSaving is the share of a unit's bytes its frame must save for
	// the unit to be stored compressed (see DefaultMinCompressSaving).
	minSaving float64
	// wholeUnits stores every unit as one extent, compressing it once:
	// the cold pass's encoder, several times slower than the jobs', would
	// cost about 60 % more CPU trying halves. A cold copy holds the data of
	// one extent, so 64 KiB halves a job made stay apart; a 128 KiB extent
	// the kernel compressed (a VM's writes) stays whole.
	wholeUnits bool
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
	return &copyEncoder{enc: btrfs.NewZstdEncoder(level, parallel), onPlain: onPlain, level: level,
		parallel: parallel, minSaving: minSaving}
}

// tableBytes is the memory the encoder holds once it has worked on every
// CPU it may use.
func (e *copyEncoder) tableBytes() uint64 {
	return btrfs.ZstdEncoderBytes(e.level) * uint64(e.parallel)
}

// write stores data at off in f (sector-aligned), in order: each 128 KiB
// unit whose frame saves a sector and the encoder's minimum share as a
// compressed extent, or as two of half its size when those take no more
// sectors (see encodeUnit), the others plainly. The units are compressed
// on every CPU at once.
func (e *copyEncoder) write(f *os.File, data []byte, off uint64) error {
	if e.plain.Load() {
		return writePlain(f, data, off)
	}
	const unit = btrfs.MaxCompressedExtent
	n := (len(data) + unit - 1) / unit
	workers := min(e.parallel, n)
	units := make([]storedUnit, n)
	// Each unit's frames are made in its own slice of one arena, and each
	// worker tries halves in a slice of its own after them: a frame that
	// outgrows its unit saves nothing and is dropped.
	buf, _ := e.arenas.Get().(*[]byte)
	if size := (n + workers) * unit; buf == nil || cap(*buf) < size {
		b := make([]byte, size)
		buf = &b
	}
	defer e.arenas.Put(buf)
	arena := *buf
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scratch := arena[(n+w)*unit : (n+w+1)*unit]
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				u := data[i*unit : min((i+1)*unit, len(data))]
				units[i] = e.encodeUnit(arena[i*unit:(i+1)*unit], scratch, u)
			}
		}()
	}
	wg.Wait()
	for i, su := range units {
		u := data[i*unit : min((i+1)*unit, len(data))]
		at := off + uint64(i*unit)
		if !su.split {
			if err := e.writeExtent(f, at, su.frames[0], u); err != nil {
				return err
			}
			continue
		}
		const half = unit / 2
		for h, frame := range su.frames {
			if err := e.writeExtent(f, at+uint64(h*half), frame, u[h*half:(h+1)*half]); err != nil {
				return err
			}
		}
	}
	return nil
}

// storedUnit is how a unit of a copy is stored: frames[0] for the whole
// unit, or, split, frames[0] and frames[1] for its halves; a nil frame is
// data stored plainly.
type storedUnit struct {
	frames [2][]byte
	split  bool
}

// encodeUnit compresses u, at most 128 KiB, into slot (its size) and, for
// a full unit whose frame takes more than two sectors, also its halves in
// scratch, keeping the halves when they take no more sectors than the
// whole: any read of a compressed extent reads and decompresses all of
// it, so two half-size extents halve what a VM's random 4 KiB read costs,
// for nothing in space. On VM images at level 3 a third to two fifths of
// the full units split so; cutting further adds little.
func (e *copyEncoder) encodeUnit(slot, scratch, u []byte) storedUnit {
	whole := e.frame(slot[:0:len(slot)], u)
	if whole == nil || e.wholeUnits || len(u) != len(slot) || btrfs.StoredBytes(len(whole)) <= 2*blockSize {
		return storedUnit{frames: [2][]byte{whole}}
	}
	half := len(u) / 2
	var halves [2][]byte
	size := 0
	for h := range halves {
		halves[h] = e.frame(scratch[h*half:h*half:(h+1)*half], u[h*half:(h+1)*half])
		if halves[h] == nil {
			size += half
		} else {
			size += btrfs.StoredBytes(len(halves[h]))
		}
	}
	if size > btrfs.StoredBytes(len(whole)) {
		return storedUnit{frames: [2][]byte{whole}}
	}
	for h := range halves {
		if halves[h] != nil {
			halves[h] = append(slot[h*half:h*half:(h+1)*half], halves[h]...)
		}
	}
	return storedUnit{frames: halves, split: true}
}

// frame returns the frame of u made in dst, or nil when it saves less
// than a sector and the encoder's minimum share: u is then stored plainly.
func (e *copyEncoder) frame(dst, u []byte) []byte {
	if frame := e.enc.Encode(dst, u); btrfs.Saves(frame, u) && e.savesEnough(len(frame), len(u)) {
		return frame
	}
	return nil
}

// writeExtent stores u at at in f: as one compressed extent holding frame,
// or plainly when frame is nil or the kernel takes no encoded writes.
func (e *copyEncoder) writeExtent(f *os.File, at uint64, frame, u []byte) error {
	if frame == nil || e.plain.Load() {
		return writePlain(f, u, at)
	}
	err := btrfs.WriteZstdExtent(f, at, frame, uint64(len(u)))
	if errors.Is(err, btrfs.ErrEncodedWriteUnsupported) {
		if !e.plain.Swap(true) {
			e.onPlain(err)
		}
		err = writePlain(f, u, at)
	}
	return err
}

func writePlain(f *os.File, data []byte, off uint64) error {
	if _, err := f.WriteAt(data, int64(off)); err != nil {
		return fmt.Errorf("write compressed copy: %w", err)
	}
	return nil
}
