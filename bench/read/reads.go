// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const (
	blockSize = 4096
	seqChunk  = 1 << 20 // a sequential read's request size, as dd bs=1M
	// runs is how many times each read is made on each side; the report
	// gives the median and the spread, since one run on a shared machine
	// can be twice as slow as the next.
	runs = 3
)

// The images read at random: the template root others are deduplicated
// against, one deduplicated against it, and an AppVM private.
var randomVIDs = []string{"vm-templates/debian-12-xfce/root", "vm-templates/fedora-41-xfce/root", "appvms/work/private"}

// image is one image of the corpus.
type image struct {
	vid string
	rel string // path in the pool directory
}

// readPlan is what every side reads: the template roots sequentially and
// the same seeded offsets of the random images.
type readPlan struct {
	roots   []image
	images  []image   // every image read, once: the roots, then the others
	random  []image   // the images read at random
	offsets [][]int64 // by random image: block offsets, all in data
}

// newReadPlan picks n offsets of data blocks (in the raw copy c, the same in
// every copy) of each random image, from a source seeded by seed.
func newReadPlan(c *corpus.Corpus, seed uint64, n int) (readPlan, error) {
	var p readPlan
	if n <= 0 {
		return p, fmt.Errorf("random reads: %d, want at least 1", n)
	}
	for _, v := range c.Roots() {
		img, err := imageOf(v.VID)
		if err != nil {
			return p, err
		}
		p.roots = append(p.roots, img)
	}
	for _, vid := range randomVIDs {
		img, err := imageOf(vid)
		if err != nil {
			return p, err
		}
		offs, err := dataOffsets(c.Path(img.rel), rand.New(rand.NewPCG(seed, uint64(len(p.random)))), n)
		if err != nil {
			return p, err
		}
		p.random = append(p.random, img)
		p.offsets = append(p.offsets, offs)
	}
	p.images = append(p.images, p.roots...)
	for _, img := range p.random {
		if !slices.Contains(p.images, img) {
			p.images = append(p.images, img)
		}
	}
	return p, nil
}

func imageOf(vid string) (image, error) {
	p, err := volume.PathsFor(vid)
	if err != nil {
		return image{}, err
	}
	return image{vid, p.Clean}, nil
}

// dataOffsets returns n offsets of 4 KiB blocks of the file at path that
// hold data (not holes), uniformly drawn by r.
func dataOffsets(path string, r *rand.Rand, n int) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pick offsets: %w", err)
	}
	defer f.Close()
	ext, err := btrfs.Extents(f, 0)
	if err != nil {
		return nil, fmt.Errorf("pick offsets in %s: %w", path, err)
	}
	// Each data item's file offset and the index of its first block
	// among all data blocks.
	type span struct{ off, first int64 }
	var spans []span
	var blocks int64
	for _, e := range ext {
		if e.DiskBytenr != 0 && e.Type != btrfs.ExtentInline {
			spans = append(spans, span{int64(e.Offset), blocks})
			blocks += (int64(e.Length) + blockSize - 1) / blockSize
		}
	}
	if blocks == 0 {
		return nil, fmt.Errorf("pick offsets in %s: no data", path)
	}
	offs := make([]int64, n)
	for i := range offs {
		b := r.Int64N(blocks)
		j := sort.Search(len(spans), func(k int) bool { return spans[k].first > b }) - 1
		offs[i] = spans[j].off + (b-spans[j].first)*blockSize
	}
	return offs, nil
}

// reading is one timed read and what it took from the disk.
type reading struct {
	bytes, ops int64 // read by the reader
	wall       time.Duration
	disk       int64 // read from the disk by the filesystem's loop device
}

func (r reading) mibPerSec() float64 { return float64(r.bytes) / (1 << 20) / r.wall.Seconds() }
func (r reading) iops() float64      { return float64(r.ops) / r.wall.Seconds() }
func (r reading) diskMiB() float64   { return float64(r.disk) / (1 << 20) }

// measureReads makes every read of plan on every side, runs times, each
// with a cold page cache. The sides take turns at each read, so that a
// change in the machine's load while the benchmark runs falls on all of
// them alike.
func measureReads(sides []*side, plan readPlan) error {
	for _, s := range sides {
		s.seq = make([][]reading, len(plan.roots))
		s.random = make([][]reading, len(plan.random))
	}
	for run := range runs {
		for i, img := range plan.roots {
			for _, s := range sides {
				benchenv.Logf("%s: sequential read %d of %s", s.name, run+1, img.vid)
				r, err := s.timedRead(sides, func() (int64, int64, error) { return readAll(s.c.Path(img.rel)) })
				if err != nil {
					return err
				}
				s.seq[i] = append(s.seq[i], r)
			}
		}
		for i, img := range plan.random {
			for _, s := range sides {
				benchenv.Logf("%s: %d random 4 KiB reads %d of %s", s.name, len(plan.offsets[i]), run+1, img.vid)
				r, err := s.timedRead(sides, func() (int64, int64, error) { return readAt(s.c.Path(img.rel), plan.offsets[i]) })
				if err != nil {
					return err
				}
				s.random[i] = append(s.random[i], r)
			}
		}
	}
	return nil
}

// timedRead drops the page cache and times read, which returns the bytes
// it read and in how many requests.
func (s *side) timedRead(sides []*side, read func() (int64, int64, error)) (reading, error) {
	if err := dropCaches(sides); err != nil {
		return reading{}, err
	}
	sec0, err := s.mount.SectorsRead()
	if err != nil {
		return reading{}, err
	}
	start := time.Now()
	n, ops, err := read()
	r := reading{bytes: n, ops: ops, wall: time.Since(start)}
	if err != nil {
		return r, err
	}
	sec1, err := s.mount.SectorsRead()
	r.disk = (sec1 - sec0) * 512
	return r, err
}

// readAll reads the file at path from start to end, seqChunk at a time.
func readAll(path string) (n, ops int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	buf := make([]byte, seqChunk)
	for {
		k, err := f.Read(buf)
		n += int64(k)
		ops++
		if errors.Is(err, io.EOF) {
			return n, ops, nil
		}
		if err != nil {
			return n, ops, fmt.Errorf("read %s at %d: %w", path, n, err)
		}
	}
}

// readAt reads the 4 KiB block at each of offs, in order.
func readAt(path string, offs []int64) (n, ops int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	buf := make([]byte, blockSize)
	for _, off := range offs {
		k, err := f.ReadAt(buf, off)
		n += int64(k)
		ops++
		if err != nil {
			return n, ops, fmt.Errorf("read %s at %d: %w", path, off, err)
		}
	}
	return n, ops, nil
}
