// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// Defaults and bounds of Options.
const (
	DefaultSampleBytes = 1 << 30
	MinSampleBytes     = 1 << 20
	DefaultZstdLevel   = 3
	// DefaultMaxEntries bounds the content sample: 16 bytes each, so at
	// most 64 MiB of memory whatever the pool's size.
	DefaultMaxEntries = 4 << 20
	// pairsToVerify is how many duplicate pairs are read back.
	pairsToVerify = 256
	// z95 is the normal quantile of a two-sided 95% interval.
	z95 = 1.959964
)

// Options tune Run. The zero value takes the defaults.
type Options struct {
	// Seed makes the random choices; the same seed on the same pool gives
	// the same estimate.
	Seed uint64
	// SampleBytes is how much data to read and compress, rounded to
	// whole 128 KiB units; SampleFraction, when set, asks for that share
	// of the data instead.
	SampleBytes    uint64
	SampleFraction float64
	ZstdLevel      int // 1 to 15; 0 takes DefaultZstdLevel
	MaxEntries     int // 0 takes DefaultMaxEntries
	// Progress, when set, is told each stage's progress.
	Progress func(stage string, done, total uint64)
}

// Stages reported to Options.Progress.
const (
	StageExtents   = "listing extents"
	StageChecksums = "reading checksums"
	StageSample    = "reading the sample"
)

// Run estimates what a full optimization would save in the pool directory
// dir. It only reads: it opens every file read-only, with O_NOATIME, and
// writes nothing anywhere. Needs CAP_SYS_ADMIN (tree searches).
func Run(ctx context.Context, dir string, opt Options) (Report, error) {
	began := time.Now()
	opt = opt.withDefaults()
	l, err := readLayout(dir)
	if err != nil {
		return Report{}, err
	}
	defer l.close()
	e := &estimator{l: l, opt: opt, counts: make([]vmCounts, len(l.vms))}
	if err := e.listing(); err != nil {
		return Report{}, err
	}
	if err := e.scan(ctx); err != nil {
		return Report{}, err
	}
	r := e.report(dir)
	r.Seconds = time.Since(began).Seconds()
	return r, nil
}

func (o Options) withDefaults() Options {
	if o.SampleBytes == 0 && o.SampleFraction == 0 {
		o.SampleBytes = DefaultSampleBytes
	}
	if o.ZstdLevel == 0 {
		o.ZstdLevel = DefaultZstdLevel
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Progress == nil {
		o.Progress = func(string, uint64, uint64) {}
	}
	return o
}

// estimator holds one run's state.
type estimator struct {
	l       *layout
	opt     Options
	counts  []vmCounts
	exts    []extent
	h       hasher
	rng     *rand.Rand
	s       *sampled
	d       *dedupScan
	results []unitResult
	nUnits  int
	// share is the part of the verified duplicate pairs found equal, of
	// verified pairs.
	share    float64
	verified int
	read     uint64
	// swept counts the checksums read in the full sweep.
	swept uint64
}

// listing reads the extent items and reference counts (metadata only).
func (e *estimator) listing() error {
	var err error
	if e.exts, err = listExtents(e.l, e.counts); err != nil {
		return err
	}
	total := uint64(len(e.exts))
	err = settle(e.l, e.exts, e.counts, func(done uint64) { e.opt.Progress(StageExtents, done, total) })
	if err != nil {
		return err
	}
	e.opt.Progress(StageExtents, total, total)
	info, err := btrfs.Checksums(e.l.root)
	if err != nil {
		return err
	}
	if info.SectorSize != blockSize {
		return fmt.Errorf("estimate: the filesystem's sectors are %d bytes; only %d is supported", info.SectorSize, blockSize)
	}
	e.h = newHasher(info)
	return nil
}

// scan samples units, sweeps the checksums twice, verifies duplicate
// pairs and reads the sample.
func (e *estimator) scan(ctx context.Context) error {
	e.rng = rand.New(rand.NewPCG(e.opt.Seed, e.opt.Seed^0x5851f42d4c957f2d))
	all := units(e.exts)
	e.nUnits = len(all)
	e.s = &sampled{units: choose(all, e.sampleUnits(all), e.rng), occ: map[uint64]*occurrence{}}
	m := &measurer{l: e.l, exts: e.exts, h: e.h, s: e.s, zeros: make([]byte, blockSize),
		enc: btrfs.NewZstdEncoder(e.opt.ZstdLevel, runtime.GOMAXPROCS(0))}
	if _, err := m.collectKeys(ctx); err != nil {
		return err
	}
	for i := range e.s.units {
		for b, key := range e.s.keys[i] {
			if e.s.have[i][b] {
				e.s.occ[key] = &occurrence{first: math.MaxUint64}
			}
		}
	}
	e.d = newDedupScan(e.exts, e.h, e.s, len(e.l.vms), e.opt.Seed)
	ts := e.d.targets()
	e.d.setRate(e.opt.MaxEntries)
	var err error
	e.swept, err = sweep(ctx, e.l.root, e.h, ts, func(t *target, off, key uint64) {
		e.d.visit(t, off, key)
		if e.swept++; e.swept%(1<<16) == 0 {
			e.opt.Progress(StageChecksums, e.swept, e.d.blocks)
		}
	})
	if err != nil {
		return err
	}
	e.opt.Progress(StageChecksums, e.d.blocks, e.d.blocks)
	pairs := e.d.tally(e.rng, pairsToVerify)
	if e.share, e.verified, err = verify(ctx, e.l, e.exts, pairs, &e.read); err != nil {
		return err
	}
	var sampleBytes uint64
	for _, u := range e.s.units {
		sampleBytes += u.length
	}
	e.results, err = m.measureAll(ctx, func(done uint64) { e.opt.Progress(StageSample, done, sampleBytes) })
	e.read += sampleBytes
	return err
}

// sampleUnits is the number of units to read: the share asked for, or as
// many as hold about SampleBytes at the units' mean size (fragmented
// extents make many small units).
func (e *estimator) sampleUnits(all []unit) int {
	if e.opt.SampleFraction > 0 {
		return int(math.Ceil(e.opt.SampleFraction * float64(len(all))))
	}
	var total uint64
	for _, u := range all {
		total += u.length
	}
	if total <= e.opt.SampleBytes {
		return len(all)
	}
	return int(math.Ceil(float64(e.opt.SampleBytes) / float64(total) * float64(len(all))))
}
