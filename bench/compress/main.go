// SPDX-License-Identifier: GPL-2.0-or-later

// Command compress compares btrfs-vdo's optimizer with the seed recipe's
// `btrfs filesystem defragment -czstd` on one generated corpus (see
// bench/corpus), built twice from the same seed on two loop-mounted btrfs
// filesystems so neither side's writes touch the other's extents, and
// prints a table against the benchmark targets of issue 3:
//
//  1. a first pass over the whole pool (defragment -r; optimize --full);
//  2. an update round rewriting about 6 % of a template root (-update),
//     committed (file-reflink's way on the defragment side, through the
//     daemon on the btrfs-vdo side), then optimized (defragment of the
//     image; the commit's background job);
//  3. for btrfs-vdo, optimize --full over a plain copy of the updated
//     image: the whole-image pass the update pass is compared with.
//
// Run as root (needs btrfs-progs, e2fsprogs and compsize):
//
//	make bench-compress BENCH_ARGS="-scale 0.25"
package main

import (
	"context"
	"io"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

func main() {
	benchenv.Main("bench/compress", func(ctx context.Context, cfg benchenv.Config, w io.Writer) error {
		return benchenv.Compare(ctx, cfg, w, benchenv.Comparison[result]{
			Baseline: "defrag",
			// Room for the corpus, the staging trees, and defragment
			// unsharing every image from its revision and precache.
			Room: 3,
			RunBaseline: func(ctx context.Context, _, mnt string, c *corpus.Corpus, target corpus.Volume) (result, error) {
				return defragSide(ctx, mnt, c, target)
			},
			RunVDO: vdoSide,
			Report: report,
		})
	})
}
