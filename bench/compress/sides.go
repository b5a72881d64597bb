// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Points at which each side is measured.
const (
	generated = iota
	afterFull
	afterCommit // the update round committed, not yet optimized
	afterUpdate
	points
)

// result is what one side did to its copy of the corpus.
type result struct {
	At          [points]benchenv.Usage
	Full        benchenv.Phase
	Update      benchenv.Phase // after the update round's commit
	Whole       benchenv.Phase // compressing the updated image from scratch
	Upd         corpus.Update
	NewRaw      int64 // bytes of the image the update wrote
	NewAtCommit int64 // what the new data took on disk when committed
	NewStored   int64 // what it takes after the pass
}

// runDefrag runs the seed recipe's defragment and waits until the data it
// compressed is on disk: defragment returns once writeback is queued.
func runDefrag(ctx context.Context, mnt string, args ...string) error {
	if err := benchenv.Run(ctx, "btrfs", append([]string{"filesystem", "defragment", "-czstd"}, args...)...); err != nil {
		return err
	}
	return benchenv.SyncFS(mnt)
}

// defragSide runs the seed recipe on c: defragment -r -czstd over the
// pool, the update round committed as file-reflink does, then defragment
// of the updated image.
func defragSide(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume) (result, error) {
	var r result
	var err error
	cpu := benchenv.ChildrenCPU
	if r.At[generated], err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	benchenv.Logf("defrag side: defragment -r -czstd %s", c.Dir)
	if r.Full, err = benchenv.Timed(cpu, func() error { return runDefrag(ctx, mnt, "-r", c.Dir) }); err != nil {
		return r, err
	}
	if r.At[afterFull], err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}

	benchenv.Logf("defrag side: update round on %s", target.VID)
	if r.Upd, err = c.UpdateRound(ctx, target.VID, 1); err != nil {
		return r, err
	}
	if r.At[afterCommit], err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	p, err := volume.PathsFor(target.VID)
	if err != nil {
		return r, err
	}
	img := c.Path(p.Clean)
	revs, err := c.Revisions(target.VID)
	if err != nil {
		return r, err
	}
	spans, raw, err := benchenv.NewData(img, revs[len(revs)-1].Path)
	if err != nil {
		return r, err
	}
	r.NewRaw = raw
	if r.NewAtCommit, err = benchenv.StoredBytes(img, spans); err != nil {
		return r, err
	}
	benchenv.Logf("defrag side: defragment -czstd %s", img)
	if r.Update, err = benchenv.Timed(cpu, func() error { return runDefrag(ctx, mnt, img) }); err != nil {
		return r, err
	}
	// A defragment always rewrites the whole file: that is its whole-image pass.
	r.Whole = r.Update
	if r.At[afterUpdate], err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	r.NewStored, err = benchenv.StoredBytes(img, spans)
	return r, err
}

// vdoSide runs btrfs-vdo on c: optimize --full over the pool, then the
// update round through the daemon (start, update the dirty image, stop),
// then waits for the background job the commit queued.
func vdoSide(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, d *benchenv.Daemon) (result, error) {
	var r result
	pool, err := d.SetupPool(ctx, c)
	if err != nil {
		return r, err
	}
	if r.At[generated], err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	benchenv.Logf("btrfs-vdo side: optimize --full %s", c.Dir)
	if r.Full, err = d.OptimizeFull(ctx, c.Dir); err != nil {
		return r, err
	}
	if r.At[afterFull], err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}

	vol, upd, dirty, img, err := d.StartUpdate(ctx, c, pool, target)
	if err != nil {
		return r, err
	}
	r.Upd = upd
	if r.At[afterCommit], err = benchenv.Point(ctx, mnt, c, map[string]string{img: dirty}); err != nil {
		return r, err
	}
	spans, raw, err := benchenv.NewData(dirty, img)
	if err != nil {
		return r, err
	}
	r.NewRaw = raw
	if r.NewAtCommit, err = benchenv.StoredBytes(dirty, spans); err != nil {
		return r, err
	}
	if r.Update, err = d.CommitAndWait(ctx, vol); err != nil {
		return r, err
	}
	if r.At[afterUpdate], err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	if r.NewStored, err = benchenv.StoredBytes(img, spans); err != nil {
		return r, err
	}
	if r.Full.Ran {
		r.Whole, err = wholeImagePass(ctx, mnt, img, target.VID, d)
	} else {
		r.Whole = benchenv.Phase{Note: r.Full.Note}
	}
	return r, err
}

// wholeImagePass times optimize --full over a pool holding only a plain
// copy of img (no revision, nothing shared): compressing the whole image.
func wholeImagePass(ctx context.Context, mnt, img, vid string, d *benchenv.Daemon) (benchenv.Phase, error) {
	dir := filepath.Join(mnt, "whole")
	dst := filepath.Join(dir, vid+".img")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return benchenv.Phase{}, fmt.Errorf("whole-image pool: %w", err)
	}
	if err := corpus.CopySparse(img, dst); err != nil {
		return benchenv.Phase{}, err
	}
	if err := benchenv.SyncFS(mnt); err != nil {
		return benchenv.Phase{}, err
	}
	pool := api.Pool{Name: "whole", DirPath: dir}
	if err := d.Call(ctx, api.OpPoolSetup, api.PoolSetupArgs{Pool: pool, SetupCheck: true}, nil); err != nil {
		return benchenv.Phase{}, err
	}
	benchenv.Logf("btrfs-vdo side: optimize --full over a plain copy of %s", vid)
	return d.OptimizeFull(ctx, dir)
}
