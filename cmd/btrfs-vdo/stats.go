// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

const statsUsage = `Usage: btrfs-vdo stats [--json] [--bytes] [TARGET]

Space used per volume, per VM and per pool of TARGET (every pool the
daemon knows when left out), counted as compsize counts it: each physical
extent once within a row. TARGET is a pool the daemon knows (its name or
directory), a VM's name, or POOL:VID.

  DISK          space on disk
  UNCOMPRESSED  what that data takes uncompressed
  REFERENCED    what the files reference: more than UNCOMPRESSED when
                extents are shared, as between an image and its revisions
  RATIO         DISK / UNCOMPRESSED, compsize's Perc: compression alone
  SAVED         REFERENCED - DISK: what compression and sharing save
  SHARED        disk space the row shares with files outside it
  EXCLUSIVE     what would be freed if the row's files went
`

// statsFooter explains the two derived columns under the table.
const statsFooter = "RATIO = DISK / UNCOMPRESSED (compression alone); SAVED = REFERENCED - DISK (compression and sharing)\n"

func stats(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("stats", statsUsage)
	var out outputFlags
	out.register(fs)
	if err := parseFlags(fs, args, stdout, argCount{0, 1, "at most one TARGET"}); err != nil {
		return err
	}
	var res api.StatsResult
	if err := callWithin(10*time.Minute, api.OpStats, api.StatsArgs{Target: fs.Arg(0)}, &res); err != nil {
		return err
	}
	for _, rows := range [][]api.UsageRow{res.Pools, res.VMs, res.Volumes} {
		slices.SortStableFunc(rows, func(a, b api.UsageRow) int { return cmp.Compare(a.Name, b.Name) })
	}
	if out.json {
		return writeJSON(stdout, res)
	}
	if len(res.Volumes) == 0 {
		_, err := fmt.Fprintln(stdout, "no volume to measure: no pool known yet, or none with volumes")
		return err
	}
	if err := statsTable(res, out.sizes()).write(stdout); err != nil {
		return err
	}
	_, err := io.WriteString(stdout, statsFooter)
	return err
}

func statsTable(res api.StatsResult, sz sizes) *table {
	t := newTable("llrrrrrrr", "KIND", "NAME", "DISK", "UNCOMPRESSED", "REFERENCED", "RATIO", "SAVED", "SHARED", "EXCLUSIVE")
	for _, group := range []struct {
		kind string
		rows []api.UsageRow
	}{{"pool", res.Pools}, {"vm", res.VMs}, {"volume", res.Volumes}} {
		for _, r := range group.rows {
			t.add(group.kind, r.Name, sz.of(r.DiskBytes), sz.of(r.UncompressedBytes), sz.of(r.ReferencedBytes),
				percent(r.DiskBytes, r.UncompressedBytes), sz.signed(int64(r.ReferencedBytes)-int64(r.DiskBytes)),
				sz.of(r.SharedBytes), sz.of(r.ExclusiveBytes))
		}
	}
	return t
}
