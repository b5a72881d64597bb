// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
)

// Comparison is a benchmark of btrfs-vdo against a baseline tool on one
// corpus, built twice from the same seed so that neither side's writes
// touch the other's extents. R is what one side measured.
type Comparison[R any] struct {
	Baseline string      // the baseline's name, also its filesystem's
	Tools    [][2]string // commands the baseline needs, with their Debian packages
	Room     int64       // filesystem size over the corpus size, for TwoCorpora
	// RunBaseline and RunVDO run one side on its corpus c, whose volume
	// target gets the update round. dir is the run's scratch directory.
	RunBaseline func(ctx context.Context, dir, mnt string, c *corpus.Corpus, target corpus.Volume) (R, error)
	RunVDO      func(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, d *Daemon) (R, error)
	// RunVDOLater, when set, goes on with the btrfs-vdo side, adding to
	// its result r, once the ideal bound after the update round is taken:
	// what it changes stays out of the space figures compared with the
	// baseline's.
	RunVDOLater func(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, d *Daemon, r *R) error
	// Report prints the table, given the ideal bound of the corpus as
	// generated and after the update round.
	Report func(w io.Writer, cfg Config, c *corpus.Corpus, target corpus.Volume, rs [2]R, ideal [2]corpus.Ideal)
}

// Compare runs cmp: both corpora, the baseline side, the daemon and its
// side, the ideal bounds, and the report to w.
func Compare[R any](ctx context.Context, cfg Config, w io.Writer, cmp Comparison[R]) error {
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return err
	}
	if err := CheckTools(bin, cmp.Tools...); err != nil {
		return err
	}
	e, err := New(cfg.Keep)
	if err != nil {
		return err
	}
	defer e.Close()
	opts := corpus.Options{Scale: cfg.Scale, Seed: cfg.Seed, Update: cfg.Update, HostFiles: cfg.HostFiles}
	cs, mnts, err := TwoCorpora(ctx, e, opts, [2]string{cmp.Baseline, "vdo"}, cmp.Room)
	if err != nil {
		return err
	}
	Logf("ideal bound of the generated corpus")
	ideal0, err := cs[1].IdealBound(ctx)
	if err != nil {
		return err
	}
	target := cs[0].Roots()[0]
	var rs [2]R
	if rs[0], err = cmp.RunBaseline(ctx, e.Dir(), mnts[0], cs[0], target); err != nil {
		return fmt.Errorf("%s side: %w", cmp.Baseline, err)
	}
	d, err := StartDaemon(e, bin)
	if err != nil {
		return err
	}
	if rs[1], err = cmp.RunVDO(ctx, mnts[1], cs[1], target, d); err != nil {
		return vdoSideError(ctx, d, err)
	}
	Logf("ideal bound after the update round")
	ideal1, err := cs[1].IdealBound(ctx)
	if err != nil {
		return err
	}
	if cmp.RunVDOLater != nil {
		if err := cmp.RunVDOLater(ctx, mnts[1], cs[1], target, d, &rs[1]); err != nil {
			return vdoSideError(ctx, d, err)
		}
	}
	cmp.Report(w, cfg, cs[1], target, rs, [2]corpus.Ideal{ideal0, ideal1})
	return nil
}

// vdoSideError says that err ended the btrfs-vdo side, with the end of
// the daemon's log unless the run was interrupted.
func vdoSideError(ctx context.Context, d *Daemon, err error) error {
	if ctx.Err() == nil {
		err = fmt.Errorf("%w; daemon log ends:\n%s", err, d.Tail())
	}
	return fmt.Errorf("btrfs-vdo side: %w", err)
}

// benchPool is the name the daemon knows a corpus's pool by.
const benchPool = "bench"

// SetupPool hands the corpus c to the daemon as a pool.
func (d *Daemon) SetupPool(ctx context.Context, c *corpus.Corpus) (api.Pool, error) {
	pool := api.Pool{Name: benchPool, DirPath: c.Dir}
	err := d.Call(ctx, api.OpPoolSetup, api.PoolSetupArgs{Pool: pool, SetupCheck: true}, nil)
	return pool, err
}

// Updated is a volume and what the update round wrote into it.
type Updated struct {
	Vol corpus.Volume
	Upd corpus.Update
}

// ReportHeader prints what every comparison's table starts with: the
// corpus, the update round of target and of the volumes more, and the
// ideal bounds.
func ReportHeader(w io.Writer, cfg Config, c *corpus.Corpus, target corpus.Volume, upd corpus.Update, ideal [2]corpus.Ideal, more ...Updated) {
	var total int64
	for _, v := range c.Volumes {
		total += v.Size
	}
	roots := "a generated /usr"
	if cfg.HostFiles {
		roots = "this machine's /usr"
	}
	fmt.Fprintf(w, "corpus: scale %g, seed %d, template roots from %s: %d volumes, %s of images, each with a precache and a revision\n",
		cfg.Scale, cfg.Seed, roots, len(c.Volumes), MiB(total))
	for _, u := range append([]Updated{{target, upd}}, more...) {
		fmt.Fprintf(w, "update round: %s, %d files rewritten, %s of new file data (%.1f %% of the image)\n",
			u.Vol.VID, u.Upd.Files, MiB(u.Upd.Bytes), 100*float64(u.Upd.Bytes)/float64(u.Vol.Size))
	}
	for i, when := range []string{"generated", "after update"} {
		fmt.Fprintf(w, "ideal bound (%s): %d distinct non-zero 4 KiB blocks of %d = %s; %s with each block zstd-3 compressed alone\n",
			when, ideal[i].UniqueBlocks, ideal[i].Blocks, MiB(ideal[i].UniqueBytes()), MiB(ideal[i].Compressed))
	}
}
