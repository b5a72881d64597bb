// SPDX-License-Identifier: GPL-2.0-or-later

// Command dedup compares btrfs-vdo's dedup with the seed recipe's
// `duperemove -r -d --hashfile=F --dedupe-options=same,partial` on one
// generated corpus (see bench/corpus), built twice from the same seed on
// two loop-mounted btrfs filesystems, and prints a table against the
// benchmark targets of issue 4:
//
//  1. a first pass over the whole pool (duperemove; optimize --full);
//  2. an update round rewriting about 6 % of a template root (-update),
//     committed (file-reflink's way on the duperemove side, through the
//     daemon on the btrfs-vdo side), then a pass (duperemove again with
//     the same hashfile; the commit's background job).
//
// Page caches are dropped before each pass, so bytes read are what a
// pass reads from disk. Run as root (needs btrfs-progs, e2fsprogs,
// btrfs-compsize and duperemove):
//
//	make bench-dedup BENCH_ARGS="-scale 0.25"
package main

import (
	"context"
	"io"
	"path/filepath"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

func main() {
	benchenv.Main("bench/dedup", func(ctx context.Context, cfg benchenv.Config, w io.Writer) error {
		return benchenv.Compare(ctx, cfg, w, benchenv.Comparison[result]{
			Baseline: "duperemove",
			Tools:    [][2]string{{"duperemove", "duperemove"}},
			Room:     2, // the corpus, its staging trees and the update round
			RunBaseline: func(ctx context.Context, dir, mnt string, c *corpus.Corpus, target corpus.Volume) (result, error) {
				return dupeSide(ctx, mnt, c, target, filepath.Join(dir, "duperemove.hash"), filepath.Join(dir, "duperemove.log"))
			},
			RunVDO: vdoSide,
			Report: report,
		})
	})
}
