package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
)

// Targets of issue 3 (and, for reference, issue 4's usage bound, which
// needs dedup).
const (
	targetSavedShare = 0.95 // of defragment's saving on the new data
	targetTimeShare  = 0.10 // update pass over whole-image pass
	targetIdealRatio = 1.25
)

func report(w io.Writer, cfg config, c *corpus.Corpus, target corpus.Volume, rs [2]result, ideal [2]corpus.Ideal) {
	var total int64
	for _, v := range c.Volumes {
		total += v.Size
	}
	a, b := rs[0], rs[1]
	fmt.Fprintf(w, "corpus: scale %g, seed %d: %d volumes, %s of images, each with a precache and a revision\n",
		cfg.scale, cfg.seed, len(c.Volumes), mib(total))
	fmt.Fprintf(w, "update round: %s, %d files rewritten, %s of new file data (%.1f %% of the image)\n",
		target.VID, b.Upd.Files, mib(b.Upd.Bytes), 100*float64(b.Upd.Bytes)/float64(target.Size))
	for i, when := range []string{"generated", "after update"} {
		fmt.Fprintf(w, "ideal bound (%s): %d distinct non-zero 4 KiB blocks of %d = %s; %s with each block zstd-3 compressed alone\n",
			when, ideal[i].UniqueBlocks, ideal[i].Blocks, mib(ideal[i].UniqueBytes()), mib(ideal[i].Compressed))
	}
	fmt.Fprintln(w)

	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) {
		for i, cell := range cells {
			if i > 0 {
				fmt.Fprint(t, "\t")
			}
			fmt.Fprint(t, cell)
		}
		fmt.Fprintln(t, "\t")
	}
	cell := func(p phase, s string) string {
		if !p.Ran {
			return "n/a"
		}
		return s
	}
	row("", "defragment -czstd", "btrfs-vdo", "target", "met")
	row("first pass over the pool", "(-r, whole pool)", "(optimize --full)")
	row("  wall time", secs(a.Full.Wall), cell(b.Full, secs(b.Full.Wall)))
	row("  CPU, tool processes", secs(a.Full.CPU), cell(b.Full, secs(b.Full.CPU)))
	row("  CPU, whole machine", secs(a.Full.MachineCPU), cell(b.Full, secs(b.Full.MachineCPU)))
	row("  pool data on disk (compsize)", change(a.At[generated].Disk, a.At[afterFull].Disk), cell(b.Full, change(b.At[generated].Disk, b.At[afterFull].Disk)))
	row("  filesystem used (statvfs)", change(a.At[generated].Used, a.At[afterFull].Used), cell(b.Full, change(b.At[generated].Used, b.At[afterFull].Used)))
	row("  image/revision shared", change(a.At[generated].Shared, a.At[afterFull].Shared), cell(b.Full, change(b.At[generated].Shared, b.At[afterFull].Shared)))
	lostA, lostB := a.At[generated].Shared-a.At[afterFull].Shared, b.At[generated].Shared-b.At[afterFull].Shared
	row("  shared bytes lost", mib(lostA), cell(b.Full, mib(lostB)), "0", cell(b.Full, met(lostB <= 0)))
	row("  data on disk / ideal bound", ratio(a.At[afterFull].Disk, ideal[0].Compressed), cell(b.Full, ratio(b.At[afterFull].Disk, ideal[0].Compressed)))

	row("update round, then a pass", "(defragment the image)", "(the commit's job)")
	row("  new data written", mib(a.NewRaw), mib(b.NewRaw))
	row("  new data on disk at commit", mib(a.NewAtCommit), mib(b.NewAtCommit))
	row("  new data on disk after the pass", mib(a.NewStored), mib(b.NewStored))
	savedA, savedB := a.NewRaw-a.NewStored, b.NewRaw-b.NewStored
	savedShare := "n/a"
	if savedA > 0 {
		savedShare = fmt.Sprintf("%s (%.1f %% of defragment's)", mib(savedB), 100*float64(savedB)/float64(savedA))
	}
	row("  saved on the new data", mib(savedA), savedShare, fmt.Sprintf(">= %.0f %% of defragment's", 100*targetSavedShare),
		met(savedA > 0 && float64(savedB) >= targetSavedShare*float64(savedA)))
	row("  image/revision shared", change(a.At[afterCommit].Shared, a.At[afterUpdate].Shared), change(b.At[afterCommit].Shared, b.At[afterUpdate].Shared))
	lostA, lostB = a.At[afterCommit].Shared-a.At[afterUpdate].Shared, b.At[afterCommit].Shared-b.At[afterUpdate].Shared
	row("  shared bytes lost", mib(lostA), mib(lostB), "0", met(lostB <= 0))
	row("  wall time of the pass", secs(a.Update.Wall), secs(b.Update.Wall))
	row("  CPU, tool processes", secs(a.Update.CPU), secs(b.Update.CPU))
	row("  CPU, whole machine", secs(a.Update.MachineCPU), secs(b.Update.MachineCPU))
	row("  whole-image pass, wall time", secs(a.Whole.Wall), cell(b.Whole, secs(b.Whole.Wall)))
	row("  whole-image pass, CPU, tool processes", secs(a.Whole.CPU), cell(b.Whole, secs(b.Whole.CPU)))
	row("  pass / whole-image pass, wall", share(a.Update.Wall, a.Whole.Wall), cell(b.Whole, share(b.Update.Wall, b.Whole.Wall)),
		fmt.Sprintf("<= %.0f %%", 100*targetTimeShare), cell(b.Whole, met(b.Update.Wall.Seconds() <= targetTimeShare*b.Whole.Wall.Seconds())))
	row("  pass / whole-image pass, tool CPU", share(a.Update.CPU, a.Whole.CPU), cell(b.Whole, share(b.Update.CPU, b.Whole.CPU)))
	row("  pool data on disk (compsize)", change(a.At[afterCommit].Disk, a.At[afterUpdate].Disk), change(b.At[afterCommit].Disk, b.At[afterUpdate].Disk))
	row("  filesystem used (statvfs)", change(a.At[afterCommit].Used, a.At[afterUpdate].Used), change(b.At[afterCommit].Used, b.At[afterUpdate].Used))
	row("  data on disk / ideal bound", ratio(a.At[afterUpdate].Disk, ideal[1].Compressed), ratio(b.At[afterUpdate].Disk, ideal[1].Compressed),
		fmt.Sprintf("<= %.2f (issue 4, with dedup)", targetIdealRatio), met(float64(b.At[afterUpdate].Disk) <= targetIdealRatio*float64(ideal[1].Compressed)))
	t.Flush()

	fmt.Fprintln(w)
	for _, n := range []struct {
		what string
		p    phase
	}{{"first pass", b.Full}, {"update pass", b.Update}, {"whole-image pass", b.Whole}} {
		if n.p.Note != "" {
			fmt.Fprintf(w, "btrfs-vdo %s: %s\n", n.what, n.p.Note)
		}
	}
	lost(w, "first pass", b.At[generated], b.At[afterFull])
	lost(w, "update pass", b.At[afterCommit], b.At[afterUpdate])
	fmt.Fprintln(w, "Shared: bytes of each image in the same extents as its newest revision, summed over volumes.")
	fmt.Fprintln(w, "New data: the ranges of the updated image not stored where its new revision's bytes are; on disk")
	fmt.Fprintln(w, "in proportion to each extent's compressed size. Tool CPU: defragment, or the daemon and the CLI;")
	fmt.Fprintln(w, "it leaves out the kernel threads that compress during writeback, which whole-machine CPU includes")
	fmt.Fprintln(w, "(with anything else running on the machine).")
}

// lost names the volumes whose image shares less with its revision after
// a btrfs-vdo pass than before.
func lost(w io.Writer, what string, before, after usage) {
	for _, v := range slices.Sorted(maps.Keys(before.SharedBy)) {
		if d := before.SharedBy[v] - after.SharedBy[v]; d > 0 {
			fmt.Fprintf(w, "btrfs-vdo %s: %s lost %d bytes shared with its revision\n", what, v, d)
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func change(from, to int64) string { return fmt.Sprintf("%s -> %s", mib(from), mib(to)) }

func share(part, whole time.Duration) string {
	if whole <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f %%", 100*part.Seconds()/whole.Seconds())
}

func ratio(n, d int64) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(n)/float64(d))
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}
