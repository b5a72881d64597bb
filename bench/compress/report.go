// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

// Targets of issue 3 (and, for reference, issue 4's benchenv.Usage bound, which
// needs dedup).
const (
	targetSavedShare = 0.95 // of defragment's saving on the new data
	targetTimeShare  = 0.10 // update pass over whole-image pass
	targetIdealRatio = 1.25
)

func report(w io.Writer, cfg benchenv.Config, c *corpus.Corpus, target corpus.Volume, rs [2]result, ideal [2]corpus.Ideal) {
	a, b := rs[0], rs[1]
	benchenv.ReportHeader(w, cfg, c, target, b.Upd, ideal)
	fmt.Fprintln(w)
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	firstPassRows(t, a, b, ideal[0])
	updateRows(t, a, b, ideal[1])
	t.Flush()
	fmt.Fprintln(w)
	footnotes(w, b)
}

// row writes one row of the table.
func row(t io.Writer, cells ...string) {
	for i, cell := range cells {
		if i > 0 {
			fmt.Fprint(t, "\t")
		}
		fmt.Fprint(t, cell)
	}
	fmt.Fprintln(t, "\t")
}

// cell is s, or n/a when the phase did not run.
func cell(p benchenv.Phase, s string) string {
	if !p.Ran {
		return "n/a"
	}
	return s
}

// firstPassRows are the rows of the first pass over the pool.
func firstPassRows(t io.Writer, a, b result, ideal corpus.Ideal) {
	row(t, "", "defragment -czstd", "btrfs-vdo", "target", "met")
	row(t, "first pass over the pool", "(-r, whole pool)", "(optimize --full)")
	row(t, "  wall time", benchenv.Secs(a.Full.Wall), cell(b.Full, benchenv.Secs(b.Full.Wall)))
	row(t, "  CPU, tool processes", benchenv.Secs(a.Full.CPU), cell(b.Full, benchenv.Secs(b.Full.CPU)))
	row(t, "  CPU, whole machine", benchenv.Secs(a.Full.MachineCPU), cell(b.Full, benchenv.Secs(b.Full.MachineCPU)))
	row(t, "  pool data on disk (compsize)", benchenv.Change(a.At[generated].Disk, a.At[afterFull].Disk), cell(b.Full, benchenv.Change(b.At[generated].Disk, b.At[afterFull].Disk)))
	row(t, "  filesystem used (statvfs)", benchenv.Change(a.At[generated].Used, a.At[afterFull].Used), cell(b.Full, benchenv.Change(b.At[generated].Used, b.At[afterFull].Used)))
	row(t, "  image/revision shared", benchenv.Change(a.At[generated].Shared, a.At[afterFull].Shared), cell(b.Full, benchenv.Change(b.At[generated].Shared, b.At[afterFull].Shared)))
	lostA, lostB := a.At[generated].SharingLost(a.At[afterFull]), b.At[generated].SharingLost(b.At[afterFull])
	row(t, "  shared bytes lost", benchenv.MiB(lostA), cell(b.Full, benchenv.MiB(lostB)), "0", cell(b.Full, benchenv.Met(lostB <= 0)))
	row(t, "  data on disk / ideal bound", benchenv.Ratio(a.At[afterFull].Disk, ideal.Compressed), cell(b.Full, benchenv.Ratio(b.At[afterFull].Disk, ideal.Compressed)))
}

// updateRows are the rows of the update round and the pass after it.
func updateRows(t io.Writer, a, b result, ideal corpus.Ideal) {
	row(t, "update round, then a pass", "(defragment the image)", "(the commit's job)")
	row(t, "  new data written", benchenv.MiB(a.NewRaw), benchenv.MiB(b.NewRaw))
	row(t, "  new data on disk at commit", benchenv.MiB(a.NewAtCommit), benchenv.MiB(b.NewAtCommit))
	row(t, "  new data on disk after the pass", benchenv.MiB(a.NewStored), benchenv.MiB(b.NewStored))
	savedA, savedB := a.NewRaw-a.NewStored, b.NewRaw-b.NewStored
	savedShare := "n/a"
	if savedA > 0 {
		savedShare = fmt.Sprintf("%s (%.1f %% of defragment's)", benchenv.MiB(savedB), 100*float64(savedB)/float64(savedA))
	}
	row(t, "  saved on the new data", benchenv.MiB(savedA), savedShare, fmt.Sprintf(">= %.0f %% of defragment's", 100*targetSavedShare),
		benchenv.Met(savedA > 0 && float64(savedB) >= targetSavedShare*float64(savedA)))
	row(t, "  image/revision shared", benchenv.Change(a.At[afterCommit].Shared, a.At[afterUpdate].Shared), benchenv.Change(b.At[afterCommit].Shared, b.At[afterUpdate].Shared))
	lostA, lostB := a.At[afterCommit].SharingLost(a.At[afterUpdate]), b.At[afterCommit].SharingLost(b.At[afterUpdate])
	row(t, "  shared bytes lost", benchenv.MiB(lostA), benchenv.MiB(lostB), "0", benchenv.Met(lostB <= 0))
	row(t, "  wall time of the pass", benchenv.Secs(a.Update.Wall), benchenv.Secs(b.Update.Wall))
	row(t, "  CPU, tool processes", benchenv.Secs(a.Update.CPU), benchenv.Secs(b.Update.CPU))
	row(t, "  CPU, whole machine", benchenv.Secs(a.Update.MachineCPU), benchenv.Secs(b.Update.MachineCPU))
	row(t, "  whole-image pass, wall time", benchenv.Secs(a.Whole.Wall), cell(b.Whole, benchenv.Secs(b.Whole.Wall)))
	row(t, "  whole-image pass, CPU, tool processes", benchenv.Secs(a.Whole.CPU), cell(b.Whole, benchenv.Secs(b.Whole.CPU)))
	row(t, "  pass / whole-image pass, wall", share(a.Update.Wall, a.Whole.Wall), cell(b.Whole, share(b.Update.Wall, b.Whole.Wall)),
		fmt.Sprintf("<= %.0f %%", 100*targetTimeShare), cell(b.Whole, benchenv.Met(b.Update.Wall.Seconds() <= targetTimeShare*b.Whole.Wall.Seconds())))
	row(t, "  pass / whole-image pass, tool CPU", share(a.Update.CPU, a.Whole.CPU), cell(b.Whole, share(b.Update.CPU, b.Whole.CPU)))
	row(t, "  pool data on disk (compsize)", benchenv.Change(a.At[afterCommit].Disk, a.At[afterUpdate].Disk), benchenv.Change(b.At[afterCommit].Disk, b.At[afterUpdate].Disk))
	row(t, "  filesystem used (statvfs)", benchenv.Change(a.At[afterCommit].Used, a.At[afterUpdate].Used), benchenv.Change(b.At[afterCommit].Used, b.At[afterUpdate].Used))
	row(t, "  data on disk / ideal bound", benchenv.Ratio(a.At[afterUpdate].Disk, ideal.Compressed), benchenv.Ratio(b.At[afterUpdate].Disk, ideal.Compressed),
		fmt.Sprintf("<= %.2f (issue 4, with dedup)", targetIdealRatio), benchenv.Met(float64(b.At[afterUpdate].Disk) <= targetIdealRatio*float64(ideal.Compressed)))
}

// footnotes explains the table's figures.
func footnotes(w io.Writer, b result) {
	for _, n := range []struct {
		what string
		p    benchenv.Phase
	}{{"first pass", b.Full}, {"update pass", b.Update}, {"whole-image pass", b.Whole}} {
		if n.p.Note != "" {
			fmt.Fprintf(w, "btrfs-vdo %s: %s\n", n.what, n.p.Note)
		}
	}
	lost(w, "first pass", b.At[generated], b.At[afterFull])
	lost(w, "update pass", b.At[afterCommit], b.At[afterUpdate])
	fmt.Fprintln(w, "Shared: bytes of each image in the same extents as its newest revision, summed over volumes.")
	fmt.Fprintln(w, "Shared bytes lost: growth of the revisions' data stored apart from their images' (a range punched")
	fmt.Fprintln(w, "from, or rewritten into, image and revision alike is no loss).")
	fmt.Fprintln(w, "New data: the ranges of the updated image not stored where its new revision's bytes are; on disk")
	fmt.Fprintln(w, "in proportion to each extent's compressed size. Tool CPU: defragment, or the daemon and the CLI;")
	fmt.Fprintln(w, "it leaves out the kernel threads that compress during writeback, which whole-machine CPU includes")
	fmt.Fprintln(w, "(with anything else running on the machine).")
}

// lost names the volumes whose revision shares less with its image after
// a btrfs-vdo pass than before.
func lost(w io.Writer, what string, before, after benchenv.Usage) {
	for _, v := range slices.Sorted(maps.Keys(before.AloneBy)) {
		if d := after.AloneBy[v] - before.AloneBy[v]; d > 0 {
			fmt.Fprintf(w, "btrfs-vdo %s: %s lost %d bytes shared with its revision\n", what, v, d)
		}
	}
}

func share(part, whole time.Duration) string {
	if whole <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f %%", 100*part.Seconds()/whole.Seconds())
}
