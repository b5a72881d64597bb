// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

// room is the building filesystem's size over the corpus's: the corpus
// and its staging trees.
const room = 2

// side is one copy of the corpus and what was measured on it.
type side struct {
	name     string // column heading
	fs       string // filesystem name
	opts     string // mount options
	optimize bool   // run optimize --full over it
	cold     bool   // and then optimize --cold
	mount    benchenv.LoopMount
	c        *corpus.Corpus
	pass     benchenv.Phase // optimize --full
	coldPass benchenv.Phase // optimize --cold
	usage    benchenv.Usage
	layouts  []layout    // of the images read, in plan.images order
	seq      [][]reading // by template root, by run
	random   [][]reading // by image read at random, by run
}

func newSides() []*side {
	return []*side{
		{name: "raw", fs: "raw"},
		{name: "compress=zstd", fs: "zstd", opts: "compress=zstd"},
		{name: "btrfs-vdo", fs: "vdo", optimize: true},
		{name: "+ cold pass", fs: "cold", optimize: true, cold: true},
	}
}

func run(ctx context.Context, cfg benchenv.Config, w io.Writer) error {
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return err
	}
	if err := benchenv.CheckTools(bin, [2]string{"losetup", "mount"}); err != nil {
		return err
	}
	e, err := benchenv.New(cfg.Keep)
	if err != nil {
		return err
	}
	defer e.Close()
	opts := corpus.Options{Scale: cfg.Scale, Seed: cfg.Seed, HostFiles: cfg.HostFiles}
	built, err := buildCorpus(ctx, e, opts)
	if err != nil {
		return err
	}
	sides := newSides()
	for _, s := range sides {
		if err := s.copyCorpus(ctx, e, built); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if err := optimize(ctx, e, bin, sides); err != nil {
		return err
	}
	benchenv.Logf("ideal bound of the corpus")
	ideal, err := built.IdealBound(ctx)
	if err != nil {
		return err
	}
	plan, err := newReadPlan(sides[0].c, cfg.Seed, *randomReads)
	if err != nil {
		return err
	}
	for _, s := range sides {
		if err := s.measureSpace(ctx, plan); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if err := measureReads(sides, plan); err != nil {
		return err
	}
	report(w, cfg, plan, sides, ideal)
	return nil
}

// buildCorpus builds the corpus on a filesystem of its own, the source
// of each side's copy.
func buildCorpus(ctx context.Context, e *benchenv.Env, opts corpus.Options) (*corpus.Corpus, error) {
	mnt, err := e.MountBtrfs(ctx, "build", room*corpusSize(opts)+2<<30)
	if err != nil {
		return nil, err
	}
	benchenv.Logf("building the corpus (scale %g, seed %d) on %s", opts.Scale, opts.Seed, mnt)
	c, err := benchenv.BuildCorpus(ctx, mnt, opts)
	if err != nil {
		return nil, err
	}
	return c, benchenv.SyncFS(mnt)
}

func corpusSize(opts corpus.Options) int64 {
	var total int64
	for _, v := range corpus.Plan(opts) {
		total += v.Size
	}
	return total
}

// copyCorpus mounts the side's filesystem and copies the corpus into it,
// written through the mount, so that a compress=zstd mount compresses it.
func (s *side) copyCorpus(ctx context.Context, e *benchenv.Env, built *corpus.Corpus) error {
	var err error
	if s.mount, err = e.MountBtrfsDirectIO(ctx, s.fs, corpusSize(built.Opts)+2<<30, s.opts); err != nil {
		return err
	}
	benchenv.Logf("copying the corpus to %s (%s)", s.mount.Dir, s.name)
	if s.c, err = built.CopyTo(filepath.Join(s.mount.Dir, "pool")); err != nil {
		return err
	}
	return benchenv.SyncFS(s.mount.Dir)
}

// optimize starts the daemon, runs optimize --full (and --cold) over the
// corpus of each side that asks for it, and stops the daemon.
func optimize(ctx context.Context, e *benchenv.Env, bin string, sides []*side) error {
	d, err := benchenv.StartDaemon(e, bin)
	if err != nil {
		return err
	}
	for _, s := range sides {
		if !s.optimize {
			continue
		}
		if _, err := d.SetupPool(ctx, s.c); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		benchenv.Logf("%s: optimize --full %s", s.name, s.c.Dir)
		if s.pass, err = d.OptimizeFull(ctx, s.c.Dir); err != nil {
			return fmt.Errorf("%s: %w; daemon log ends:\n%s", s.name, err, d.Tail())
		}
		if !s.pass.Ran {
			return fmt.Errorf("%s: optimize --full: %s", s.name, s.pass.Note)
		}
		if s.cold {
			benchenv.Logf("%s: optimize --cold %s", s.name, s.c.Dir)
			if s.coldPass, err = d.OptimizeCold(ctx, s.c.Dir); err != nil {
				return fmt.Errorf("%s: %w; daemon log ends:\n%s", s.name, err, d.Tail())
			}
			if !s.coldPass.Ran {
				return fmt.Errorf("%s: optimize --cold: %s", s.name, s.coldPass.Note)
			}
		}
		if err := benchenv.SyncFS(s.mount.Dir); err != nil {
			return err
		}
	}
	// Stopped before the reads, so that writing the dedup index back,
	// which it does within seconds of its jobs, is not among them.
	return d.Stop()
}

// measureSpace takes the side's space figures and the layout of the
// images it reads.
func (s *side) measureSpace(ctx context.Context, plan readPlan) error {
	var err error
	if s.usage, err = benchenv.Point(ctx, s.mount.Dir, s.c, nil); err != nil {
		return err
	}
	for _, img := range plan.images {
		l, err := imageLayout(s.c.Path(img.rel))
		if err != nil {
			return err
		}
		s.layouts = append(s.layouts, l)
	}
	return nil
}

// dropCaches writes back every side's filesystem and drops the page
// cache, so that the next read comes from the disk.
func dropCaches(sides []*side) error {
	for _, s := range sides {
		if err := benchenv.SyncFS(s.mount.Dir); err != nil {
			return err
		}
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}
