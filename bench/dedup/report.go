// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

// Targets of issue 4.
const (
	targetIdealRatio   = 1.25
	targetSharingKept  = 0.99
	targetSpeedup      = 10 // the commit's job against duperemove's rerun
	targetReadShare    = 2  // update pass reads over changed bytes
	targetRSSOverIndex = 64 << 20
)

func report(w io.Writer, cfg benchenv.Config, c *corpus.Corpus, target corpus.Volume, rs [2]result, ideal [2]corpus.Ideal) {
	a, b := rs[0], rs[1]
	benchenv.ReportHeader(w, cfg, c, target, b.Upd, ideal)
	fmt.Fprintf(w, "changed bytes of the updated image: %s\nbtrfs-vdo dedup index: %s\n\n", benchenv.MiB(b.Changed), benchenv.MiB(b.Index))

	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// Every row has every column, so that tabwriter aligns the whole table.
	row := func(cells ...string) {
		cells = append(cells, make([]string, max(0, 5-len(cells)))...)
		for i, cell := range cells {
			if i > 0 {
				fmt.Fprint(t, "\t")
			}
			fmt.Fprint(t, cell)
		}
		fmt.Fprintln(t, "\t")
	}
	passRows := func(pa, pb pass) {
		row("  wall time", benchenv.Secs(pa.Wall), benchenv.Secs(pb.Wall))
		row("  CPU, tool processes", benchenv.Secs(pa.CPU), benchenv.Secs(pb.CPU))
		row("  CPU, whole machine", benchenv.Secs(pa.MachineCPU), benchenv.Secs(pb.MachineCPU))
		row("  bytes read from disk", benchenv.MiB(pa.Read), benchenv.MiB(pb.Read))
		row("  peak RSS", benchenv.MiB(pa.PeakRSS), benchenv.MiB(pb.PeakRSS))
		row("  pool data usage (compsize)", benchenv.Change(pa.Before.Disk, pa.After.Disk), benchenv.Change(pb.Before.Disk, pb.After.Disk))
		row("  bytes freed", benchenv.MiB(pa.Freed()), benchenv.MiB(pb.Freed()))
		row("    daemon's count: freed / by dedup", "", benchenv.MiB(pb.Saved)+" / "+benchenv.MiB(pb.DedupFreed))
		row("    daemon's count: bytes hashed", "", benchenv.MiB(pb.Hashed))
		row("  image/revision sharing kept", percent(pa.SharingKept()), percent(pb.SharingKept()))
	}
	row("", "duperemove", "btrfs-vdo", "target", "met")
	row("first pass over the pool", "(-r -d, new hashfile)", "(optimize --full)")
	passRows(a.First, b.First)
	est := b.Estimate.Total
	row("  estimated beforehand: freed", "", benchenv.MiB(est.SavingBytes)+" ± "+benchenv.MiB(int64(est.DedupedErrorBytes)))
	row("    estimate: bytes read, wall time", "", benchenv.MiB(int64(b.Estimate.BytesRead))+", "+benchenv.Secs(b.EstimateWall))
	row("update round, then a pass", "(rerun, same hashfile)", "(the commit's job)")
	passRows(a.Update, b.Update)
	row("    of which the commit (stop)", "", benchenv.Secs(b.Update.Commit))
	row("    of which the job", "", benchenv.Secs(b.Update.Job()))
	row("  speed-up over duperemove's rerun: job", "", speedup(a.Update.Wall, b.Update.Job()), fmt.Sprintf(">= %dx", targetSpeedup),
		benchenv.Met(b.Update.Job() > 0 && b.Update.Job()*targetSpeedup <= a.Update.Wall))
	row("  speed-up: commit and job", "", speedup(a.Update.Wall, b.Update.Wall))
	row("  reads / changed bytes", benchenv.Ratio(a.Update.Read, a.Changed), benchenv.Ratio(b.Update.Read, b.Changed),
		fmt.Sprintf("<= %d", targetReadShare), benchenv.Met(b.Update.Read <= targetReadShare*b.Changed))

	row("both passes")
	freedA, freedB := a.First.Freed()+a.Update.Freed(), b.First.Freed()+b.Update.Freed()
	row("  bytes freed", benchenv.MiB(freedA), benchenv.MiB(freedB), ">= duperemove's", benchenv.Met(freedB >= freedA))
	keptA, keptB := min(a.First.SharingKept(), a.Update.SharingKept()), min(b.First.SharingKept(), b.Update.SharingKept())
	row("  image/revision sharing kept (worst pass)", percent(keptA), percent(keptB), fmt.Sprintf(">= %.0f %%", 100*targetSharingKept), benchenv.Met(keptB >= targetSharingKept))
	usageA, usageB := a.Update.After.Disk, b.Update.After.Disk
	row("  pool data usage after the update", benchenv.MiB(usageA), benchenv.MiB(usageB))
	row("  usage / ideal bound", benchenv.Ratio(usageA, ideal[1].Compressed), benchenv.Ratio(usageB, ideal[1].Compressed),
		fmt.Sprintf("<= %.2f, sharing >= %.0f %%", targetIdealRatio, 100*targetSharingKept),
		benchenv.Met(float64(usageB) <= targetIdealRatio*float64(ideal[1].Compressed) && keptB >= targetSharingKept))
	rssA, rssB := max(a.First.PeakRSS, a.Update.PeakRSS), max(b.First.PeakRSS, b.Update.PeakRSS)
	row("  peak RSS", benchenv.MiB(rssA), benchenv.MiB(rssB), fmt.Sprintf("<= index + %s", benchenv.MiB(targetRSSOverIndex)),
		benchenv.Met(rssB <= b.Index+targetRSSOverIndex))
	row("  hashing per core", "", "see make bench-hash", ">= 1 GB/s", "n/a")
	t.Flush()

	fmt.Fprintln(w)
	for _, n := range []struct {
		what string
		p    pass
	}{{"first pass", b.First}, {"update pass", b.Update}} {
		if n.p.Note != "" {
			fmt.Fprintf(w, "btrfs-vdo %s: %s\n", n.what, n.p.Note)
		}
	}
	fmt.Fprintln(w, "Estimated beforehand: btrfs-vdo estimate on the pool before the first pass (95% interval), cold caches.")
	fmt.Fprintln(w, "Bytes freed: compsize's disk usage of the pool's volume files before the pass minus after it.")
	fmt.Fprintln(w, "Sharing kept: 1 - sharing lost / bytes of the images in the same extents as their newest revisions")
	fmt.Fprintln(w, "before the pass. Sharing lost: growth of the revisions' data stored apart from their images' (a range")
	fmt.Fprintln(w, "punched from, or rewritten into, image and revision alike is no loss). Changed bytes: the updated")
	fmt.Fprintln(w, "image's data not shared with its revision.")
	fmt.Fprintln(w, "Speed-up: duperemove's rerun against the job the commit queued, from the stop's return to the job's")
	fmt.Fprintln(w, "end (polled every 5 ms); the commit itself is the same on both sides and untimed on duperemove's.")
	fmt.Fprintln(w, "Caches are dropped before each pass. duperemove: its own rusage (CPU, maxrss, inblock); btrfs-vdo:")
	fmt.Fprintln(w, "the daemon's /proc figures (CPU with the CLI's, read_bytes, VmHWM reset at the pass's start).")
}

func percent(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) }

// speedup is how many times faster b ran than a.
func speedup(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fx", a.Seconds()/b.Seconds())
}
