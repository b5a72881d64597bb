// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Ideal is the ideal storage bound of a set of images: every distinct
// non-zero 4 KiB block stored once, compressed.
type Ideal struct {
	Blocks       int64 // non-zero blocks over all files, every copy counted
	UniqueBlocks int64 // distinct non-zero blocks
	// Compressed is the sum over distinct blocks of each one compressed
	// alone with zstd level 3 (klauspost/compress SpeedDefault, a pure Go
	// zstd), and kept raw (4 KiB) where that is not smaller, as btrfs does.
	Compressed int64
}

// UniqueBytes is the size of the distinct blocks, uncompressed.
func (i Ideal) UniqueBytes() int64 { return i.UniqueBlocks * blockSize }

// readChunk is how much of a file is read at once; batch is how many
// distinct blocks go to a compression worker at once.
const (
	readChunk = 4 << 20
	batch     = 256
)

// IdealBound computes the ideal bound of every file of the pool's volumes
// (images, revisions, precaches and anything else under appvms/ and
// vm-templates/). Blocks are identified by a 64-bit xxhash; at the block counts of a
// benchmark a collision is vanishingly unlikely and would only shift the
// bound by one block. Holes are skipped without reading them.
func (c *Corpus) IdealBound(ctx context.Context) (Ideal, error) {
	var res Ideal
	var compressed atomic.Int64
	work := make(chan []byte)
	wait := startCompressors(work, &compressed)
	seen := make(map[uint64]struct{})
	var pending []byte
	walk := func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return eachDataBlock(path, func(block []byte) {
			res.Blocks++
			h := xxhash.Sum64(block)
			if _, ok := seen[h]; ok {
				return
			}
			seen[h] = struct{}{}
			res.UniqueBlocks++
			pending = append(pending, block...)
			if len(pending) == batch*blockSize {
				work <- pending
				pending = nil
			}
		})
	}
	var err error
	for _, dir := range c.VolumeDirs() {
		if err = filepath.WalkDir(dir, walk); err != nil {
			break
		}
	}
	if len(pending) > 0 && err == nil {
		work <- pending
	}
	close(work)
	werr := wait()
	if err != nil {
		return Ideal{}, fmt.Errorf("ideal bound of %s: %w", c.Dir, err)
	}
	if werr != nil {
		return Ideal{}, fmt.Errorf("ideal bound of %s: %w", c.Dir, werr)
	}
	res.Compressed = compressed.Load()
	return res, nil
}

// startCompressors compresses the batches from work on every CPU, adding
// their stored sizes to total; wait waits, once work is closed, for all
// of them and returns the first error.
func startCompressors(work <-chan []byte, total *atomic.Int64) (wait func() error) {
	var wg sync.WaitGroup
	var werr error
	var once sync.Once
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := compressBatches(work, total); err != nil {
				once.Do(func() { werr = err })
			}
		}()
	}
	return func() error {
		wg.Wait()
		return werr
	}
}

// compressBatches adds the stored size of each block of each batch from
// work to total, until work is closed.
func compressBatches(work <-chan []byte, total *atomic.Int64) error {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		for range work { // keep the producer from blocking
		}
		return fmt.Errorf("zstd encoder: %w", err)
	}
	defer enc.Close()
	dst := make([]byte, 0, 2*blockSize)
	for b := range work {
		var sum int64
		for off := 0; off < len(b); off += blockSize {
			dst = enc.EncodeAll(b[off:off+blockSize], dst[:0])
			sum += int64(min(len(dst), blockSize))
		}
		total.Add(sum)
	}
	return nil
}

var zeroBlock = make([]byte, blockSize)

// eachDataBlock calls fn with every non-zero 4 KiB block of the file at
// path (a short last block is zero-padded), skipping holes. fn must not
// keep the slice.
func eachDataBlock(path string, fn func([]byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	buf := make([]byte, readChunk)
	fd := int(f.Fd())
	for off := int64(0); ; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only holes remain
		}
		if err != nil {
			return fmt.Errorf("seek data in %s at %d: %w", path, off, err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole in %s at %d: %w", path, start, err)
		}
		start &^= blockSize - 1
		for off = start; off < end; {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s at %d: %w", path, off, err)
			}
			if n == 0 {
				return nil
			}
			for i := 0; i < n; i += blockSize {
				block := buf[i:min(i+blockSize, n)]
				if len(block) < blockSize {
					block = append(append([]byte(nil), block...), zeroBlock[len(block):]...)
				}
				if !bytes.Equal(block, zeroBlock) {
					fn(block)
				}
			}
			off += int64(n)
		}
	}
}
