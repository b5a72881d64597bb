// Command dedup compares btrfs-vdo's dedup with the seed recipe's
// `duperemove -r -d --hashfile=F --dedupe-options=same,partial` on one
// generated corpus (see bench/corpus), built twice from the same seed on
// two loop-mounted btrfs filesystems, and prints a table against the
// benchmark targets of issue 4:
//
//  1. a first pass over the whole pool (duperemove; optimize --full);
//  2. an update round rewriting about 6 % of a template root, committed
//     (file-reflink's way on the duperemove side, through the daemon on
//     the btrfs-vdo side), then a pass (duperemove again with the same
//     hashfile; the commit's background job).
//
// Page caches are dropped before each pass, so bytes read are what a
// pass reads from disk. Run as root (needs btrfs-progs, e2fsprogs,
// btrfs-compsize and duperemove):
//
//	make bench-dedup BENCH_ARGS="-scale 0.25"
package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

func main() {
	benchenv.Main("bench/dedup", bench)
}

// bench builds both sides, runs them and prints the table to w.
func bench(ctx context.Context, cfg benchenv.Config, w io.Writer) error {
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return err
	}
	if err := benchenv.CheckTools(bin, [2]string{"duperemove", "duperemove"}); err != nil {
		return err
	}
	e, err := benchenv.New(cfg.Keep)
	if err != nil {
		return err
	}
	defer e.Close()

	// Room for the corpus, its staging trees and the update round.
	cs, mnts, err := benchenv.TwoCorpora(ctx, e, corpus.Options{Scale: cfg.Scale, Seed: cfg.Seed}, [2]string{"duperemove", "vdo"}, 2)
	if err != nil {
		return err
	}
	benchenv.Logf("ideal bound of the generated corpus")
	ideal0, err := cs[1].IdealBound(ctx)
	if err != nil {
		return err
	}
	target := cs[0].Roots()[0]
	var rs [2]result
	hashfile := filepath.Join(e.Dir(), "duperemove.hash")
	if rs[0], err = dupeSide(ctx, mnts[0], cs[0], target, hashfile, filepath.Join(e.Dir(), "duperemove.log")); err != nil {
		return fmt.Errorf("duperemove side: %w", err)
	}
	d, err := benchenv.StartDaemon(e, bin)
	if err != nil {
		return err
	}
	if rs[1], err = vdoSide(ctx, mnts[1], cs[1], target, d); err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("%w; daemon log ends:\n%s", err, d.Tail())
		}
		return fmt.Errorf("btrfs-vdo side: %w", err)
	}
	benchenv.Logf("ideal bound after the update round")
	ideal1, err := cs[1].IdealBound(ctx)
	if err != nil {
		return err
	}
	report(w, cfg, cs[1], target, rs, [2]corpus.Ideal{ideal0, ideal1})
	return nil
}
