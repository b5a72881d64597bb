// SPDX-License-Identifier: GPL-2.0-or-later

// Command dedup compares btrfs-vdo's dedup with the seed recipe's
// `duperemove -r -d --hashfile=F --dedupe-options=same,partial` on one
// generated corpus (see bench/corpus), built twice from the same seed on
// two loop-mounted btrfs filesystems, and measures what btrfs-vdo's work
// on an update costs per byte it changed:
//
//  1. a first pass over the whole pool (duperemove; optimize --full);
//  2. an update round rewriting about 6 % of a template root (-update)
//     and 2 % of an AppVM private, committed (file-reflink's way on the
//     duperemove side, through the daemon on the btrfs-vdo side), then a
//     pass (duperemove again with the same hashfile; the commits' jobs);
//  3. on the btrfs-vdo side, optimize --cold over the pool: the cold pass
//     of every volume at the daemon's cold_zstd_level, against the ideal
//     bound after the update round;
//  4. on the btrfs-vdo side, the update round again on the same volumes,
//     committed the file-reflink way outside the daemon (reflink the
//     image to a revision, rename the dirty image over it), then
//     optimize --full of each updated volume.
//
// It prints duperemove's and btrfs-vdo's passes side by side against the
// space, sharing and memory targets, then btrfs-vdo's update passes on
// both paths (2 and 4), per kind of volume: bytes read, CPU and bytes
// examined per MiB changed, against the targets of reading at most 1.5
// times the bytes changed and examining at least 100 MiB/s in a template
// root's update job. The speed-up over duperemove's rerun, which rereads
// every file, is printed for information.
//
// Page caches are dropped before each pass, so bytes read are what a
// pass reads from disk; each volume's update pass is measured apart.
// Run as root (needs btrfs-progs, e2fsprogs, btrfs-compsize and
// duperemove):
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
			RunVDOLater: func(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, d *benchenv.Daemon, r *result) error {
				if err := coldPass(ctx, mnt, c, d, r); err != nil {
					return err
				}
				return outsideUpdate(ctx, mnt, c, target, d, r)
			},
			Report: report,
		})
	})
}
