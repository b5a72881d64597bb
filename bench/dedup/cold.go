// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

// Targets of the cold pass: space below the ideal bound, sharing kept.
const targetColdIdealRatio = 0.95

// coldPass runs optimize --cold over the whole pool after the update
// round through the daemon, with cold caches: the cold pass of every
// volume, whatever its data's age, at the daemon's cold_zstd_level.
func coldPass(ctx context.Context, mnt string, c *corpus.Corpus, d *benchenv.Daemon, r *result) error {
	var err error
	if r.Cold.Before, err = benchenv.Point(ctx, mnt, c, nil); err != nil {
		return err
	}
	benchenv.Logf("btrfs-vdo side: optimize --cold %s", c.Dir)
	cold := func() (benchenv.Phase, error) { return d.OptimizeCold(ctx, c.Dir) }
	if err := daemonPass(ctx, mnt, c.Dir, d, &r.Cold, cold); err != nil {
		return err
	}
	r.Cold.After, err = benchenv.Point(ctx, mnt, c, nil)
	return err
}

// coldTable prints what the cold pass cost and left, against the ideal
// bound after the update round.
func coldTable(w io.Writer, p pass, ideal corpus.Ideal) {
	t := newTable(w, 4)
	t.row("btrfs-vdo: cold pass after the update", "(optimize --cold)", "target", "met")
	t.row("  wall time", benchenv.Secs(p.Wall))
	t.row("  CPU, daemon and CLI", benchenv.Secs(p.CPU))
	t.row("  bytes read from disk", benchenv.MiB(p.Read))
	t.row("  bytes examined (cold_bytes_examined)", benchenv.MiB(p.ColdExamined))
	t.row("  CPU per GiB examined", cpuPerGiB(p))
	t.row("  pool data usage (compsize)", benchenv.Change(p.Before.Disk, p.After.Disk))
	t.row("  bytes freed", benchenv.MiB(p.Freed()))
	t.row("    daemon's count: freed", benchenv.MiB(p.Saved))
	t.row("  usage / ideal bound, before the pass", benchenv.Ratio(p.Before.Disk, ideal.Compressed))
	kept := p.SharingKept()
	t.row("  usage / ideal bound, after it", benchenv.Ratio(p.After.Disk, ideal.Compressed),
		fmt.Sprintf("<= %.2f, sharing >= %.0f %%", targetColdIdealRatio, 100*targetSharingKept),
		benchenv.Met(float64(p.After.Disk) <= targetColdIdealRatio*float64(ideal.Compressed) && kept >= targetSharingKept))
	t.row("  image/revision sharing kept", percent(kept))
	t.flush()
}

func cpuPerGiB(p pass) string {
	if p.ColdExamined <= 0 {
		return "n/a"
	}
	perGiB := p.CPU.Seconds() * (1 << 30) / float64(p.ColdExamined)
	return benchenv.Secs(time.Duration(perGiB * float64(time.Second)))
}
