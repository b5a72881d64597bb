// Command compress compares btrfs-vdo's optimiser with the seed recipe's
// `btrfs filesystem defragment -czstd` on one generated corpus (see
// bench/corpus), built twice from the same seed on two loop-mounted btrfs
// filesystems so neither side's writes touch the other's extents, and
// prints a table against the benchmark targets of issue 3:
//
//  1. a first pass over the whole pool (defragment -r; optimize --full);
//  2. an update round rewriting about 6 % of a template root, committed
//     (file-reflink's way on the defragment side, through the daemon on
//     the btrfs-vdo side), then optimised (defragment of the image; the
//     commit's background job);
//  3. for btrfs-vdo, optimize --full over a plain copy of the updated
//     image: the whole-image pass the update pass is compared with.
//
// Run as root (needs btrfs-progs, e2fsprogs and compsize):
//
//	make bench-compress BENCH_ARGS="-scale 0.25"
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
	benchenv.Main("bench/compress", bench)
}

// bench builds both sides, runs them and prints the table to w.
func bench(ctx context.Context, cfg benchenv.Config, w io.Writer) error {
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return err
	}
	if err := benchenv.CheckTools(bin); err != nil {
		return err
	}
	e, err := benchenv.New(cfg.Keep)
	if err != nil {
		return err
	}
	defer e.Close()

	// Room for the corpus, the staging trees, and defragment unsharing
	// every image from its revision and precache.
	cs, mnts, err := benchenv.TwoCorpora(ctx, e, corpus.Options{Scale: cfg.Scale, Seed: cfg.Seed}, [2]string{"defrag", "vdo"}, 3)
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
	if rs[0], err = defragSide(ctx, mnts[0], cs[0], target); err != nil {
		return fmt.Errorf("defragment side: %w", err)
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
