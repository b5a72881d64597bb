// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

// Targets: space, sharing and memory against duperemove and the ideal
// bound; the update's work against the bytes it changed, on both paths.
const (
	targetIdealRatio     = 1.25
	targetSharingKept    = 0.99
	targetReadPerChanged = 1.5       // bytes read over bytes changed, each volume of each path
	targetExaminedRate   = 100 << 20 // bytes a template root's update job examines per second
	targetRSSOverIndex   = 64 << 20
)

func report(w io.Writer, cfg benchenv.Config, c *corpus.Corpus, target corpus.Volume, rs [2]result, ideal [2]corpus.Ideal) {
	a, b := rs[0], rs[1]
	benchenv.ReportHeader(w, cfg, c, target, b.Daemon[0].Upd, ideal, benchenv.Updated{Vol: b.Daemon[1].Vol, Upd: b.Daemon[1].Upd})
	fmt.Fprintf(w, "changed bytes of the updated images: %s\nbtrfs-vdo dedup index: %s\n\n", benchenv.MiB(b.Changed), benchenv.MiB(b.Index))
	comparisonTable(w, a, b, ideal)
	fmt.Fprintln(w)
	workTable(w, b)
	fmt.Fprintln(w)
	coldTable(w, b.Cold, ideal[1])
	fmt.Fprintln(w)
	for _, n := range []struct{ what, note string }{
		{"first pass", b.First.Note}, {"update pass", b.Update.Note}, {"cold pass", b.Cold.Note}, {"update outside the daemon", b.Outside.note()},
	} {
		if n.note != "" {
			fmt.Fprintf(w, "btrfs-vdo %s: %s\n", n.what, n.note)
		}
	}
	footnotes(w)
}

// table prints rows of cells aligned in columns.
type table struct {
	t    *tabwriter.Writer
	cols int
}

func newTable(w io.Writer, cols int) *table {
	return &table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), cols}
}

// row prints one row. Every row has every column, so that tabwriter
// aligns the whole table.
func (t *table) row(cells ...string) {
	cells = append(cells, make([]string, max(0, t.cols-len(cells)))...)
	fmt.Fprintln(t.t, strings.Join(cells, "\t")+"\t")
}

func (t *table) flush() { t.t.Flush() }

// comparisonTable prints duperemove's and btrfs-vdo's passes side by side.
func comparisonTable(w io.Writer, a, b result, ideal [2]corpus.Ideal) {
	t := newTable(w, 5)
	t.row("", "duperemove", "btrfs-vdo", "target", "met")
	t.row("first pass over the pool", "(-r -d, new hashfile)", "(optimize --full)")
	passRows(t, a.First, b.First)
	est := b.Estimate.Total
	t.row("  estimated beforehand: freed", "", benchenv.MiB(est.SavingBytes)+" ± "+benchenv.MiB(int64(est.DedupedErrorBytes)))
	t.row("    estimate: bytes read, wall time", "", benchenv.MiB(int64(b.Estimate.BytesRead))+", "+benchenv.Secs(b.EstimateWall))
	t.row("update round, then a pass", "(rerun, same hashfile)", "(the commits' jobs)")
	passRows(t, a.Update, b.Update)
	t.row("    of which the commits (stop)", "", benchenv.Secs(b.Update.Commit))
	t.row("    of which the jobs", "", benchenv.Secs(b.Update.Job()))
	t.row("  speed-up over duperemove's rerun: jobs", "", speedup(a.Update.Wall, b.Update.Job()), "informational")
	t.row("  speed-up: commits and jobs", "", speedup(a.Update.Wall, b.Update.Wall), "informational")
	t.row("  reads / changed bytes", benchenv.Ratio(a.Update.Read, a.Changed), benchenv.Ratio(b.Update.Read, b.Changed), "see below")

	t.row("both passes")
	freedA, freedB := a.First.Freed()+a.Update.Freed(), b.First.Freed()+b.Update.Freed()
	t.row("  bytes freed", benchenv.MiB(freedA), benchenv.MiB(freedB), ">= duperemove's", benchenv.Met(freedB >= freedA))
	keptA, keptB := min(a.First.SharingKept(), a.Update.SharingKept()), min(b.First.SharingKept(), b.Update.SharingKept())
	t.row("  image/revision sharing kept (worst pass)", percent(keptA), percent(keptB), fmt.Sprintf(">= %.0f %%", 100*targetSharingKept), benchenv.Met(keptB >= targetSharingKept))
	usageA, usageB := a.Update.After.Disk, b.Update.After.Disk
	t.row("  pool data usage after the update", benchenv.MiB(usageA), benchenv.MiB(usageB))
	t.row("  usage / ideal bound", benchenv.Ratio(usageA, ideal[1].Compressed), benchenv.Ratio(usageB, ideal[1].Compressed),
		fmt.Sprintf("<= %.2f, sharing >= %.0f %%", targetIdealRatio, 100*targetSharingKept),
		benchenv.Met(float64(usageB) <= targetIdealRatio*float64(ideal[1].Compressed) && keptB >= targetSharingKept))
	rssA, rssB := max(a.First.PeakRSS, a.Update.PeakRSS), max(b.First.PeakRSS, b.Update.PeakRSS)
	t.row("  peak RSS", benchenv.MiB(rssA), benchenv.MiB(rssB), fmt.Sprintf("<= index + %s", benchenv.MiB(targetRSSOverIndex)),
		benchenv.Met(rssB <= b.Index+targetRSSOverIndex))
	t.row("  hashing per core", "", "see make bench-hash", ">= 1 GB/s", "n/a")
	t.flush()
}

func passRows(t *table, pa, pb pass) {
	t.row("  wall time", benchenv.Secs(pa.Wall), benchenv.Secs(pb.Wall))
	t.row("  CPU, tool processes", benchenv.Secs(pa.CPU), benchenv.Secs(pb.CPU))
	t.row("  CPU, whole machine", benchenv.Secs(pa.MachineCPU), benchenv.Secs(pb.MachineCPU))
	t.row("  bytes read from disk", benchenv.MiB(pa.Read), benchenv.MiB(pb.Read))
	t.row("  peak RSS", benchenv.MiB(pa.PeakRSS), benchenv.MiB(pb.PeakRSS))
	t.row("  pool data usage (compsize)", benchenv.Change(pa.Before.Disk, pa.After.Disk), benchenv.Change(pb.Before.Disk, pb.After.Disk))
	t.row("  bytes freed", benchenv.MiB(pa.Freed()), benchenv.MiB(pb.Freed()))
	t.row("    daemon's count: freed / by dedup", "", benchenv.MiB(pb.Saved)+" / "+benchenv.MiB(pb.DedupFreed))
	t.row("    daemon's count: bytes hashed", "", benchenv.MiB(pb.Hashed))
	t.row("  image/revision sharing kept", percent(pa.SharingKept()), percent(pb.SharingKept()))
}

// workTable prints what btrfs-vdo's update passes cost per byte changed,
// by path and kind of volume, against the targets.
func workTable(w io.Writer, b result) {
	t := newTable(w, 5)
	t.row("btrfs-vdo: the update's work", kinds[0], kinds[1], "target", "met")
	t.row("commits through the daemon", "(the commit's job)", "(the commit's job)")
	pathRows(t, b.Daemon)
	t.row("commits outside the daemon", "(optimize --full)", "(optimize --full)")
	pathRows(t, b.Outside)
	t.flush()
}

func pathRows(t *table, u updatePath) {
	each := func(label string, f func(v volumeUpdate) string, target ...string) {
		t.row(append([]string{label, f(u[0]), f(u[1])}, target...)...)
	}
	each("  new file data written", func(v volumeUpdate) string { return benchenv.MiB(v.Upd.Bytes) })
	each("  bytes changed", func(v volumeUpdate) string { return benchenv.MiB(v.Changed) })
	each("  wall time of the job", func(v volumeUpdate) string { return benchenv.Secs(v.Pass.Job()) })
	each("  bytes read from disk", func(v volumeUpdate) string { return benchenv.MiB(v.Pass.Read) })
	each("    then, measuring the pool", func(v volumeUpdate) string { return benchenv.MiB(v.Pass.MeasureRead) })
	each("  CPU, daemon and CLI", func(v volumeUpdate) string { return benchenv.Secs(v.Pass.CPU) })
	each("  bytes examined", func(v volumeUpdate) string { return benchenv.MiB(v.Pass.examined()) })
	each("    by the compress stage", func(v volumeUpdate) string { return benchenv.MiB(v.Pass.Examined) })
	each("    hashed by the dedup stage", func(v volumeUpdate) string { return benchenv.MiB(v.Pass.Hashed) })
	each("  index lookups / same bytes", func(v volumeUpdate) string { return fmt.Sprintf("%d / %d", v.Pass.Lookups, v.Pass.Hits) })
	each("  time in FIDEDUPERANGE", func(v volumeUpdate) string { return benchenv.Secs(time.Duration(v.Pass.DedupeMs) * time.Millisecond) })
	each("  freed (daemon's count)", func(v volumeUpdate) string { return benchenv.MiB(v.Pass.Saved) })
	each("  per MiB changed: bytes read", func(v volumeUpdate) string { return mibPerMiB(v.Pass.Read, v.Changed) },
		fmt.Sprintf("<= %.1f MiB", targetReadPerChanged), readsMet(u))
	each("  per MiB changed: CPU", func(v volumeUpdate) string { return cpuPerMiB(v.Pass.CPU, v.Changed) })
	each("  per MiB changed: bytes examined", func(v volumeUpdate) string { return mibPerMiB(v.Pass.examined(), v.Changed) })
	each("  examined per second of the job", func(v volumeUpdate) string { return rateString(v.examinedRate()) },
		fmt.Sprintf(">= %.0f MiB/s (%s)", float64(targetExaminedRate)/(1<<20), kinds[0]),
		benchenv.Met(u[0].Pass.Ran && u[0].examinedRate() >= targetExaminedRate))
}

// readsMet judges the reads target on every volume of the path, naming
// those that miss it.
func readsMet(u updatePath) string {
	var missed []string
	for i, v := range u {
		if !v.Pass.Ran || v.Changed <= 0 || float64(v.Pass.Read) > targetReadPerChanged*float64(v.Changed) {
			missed = append(missed, kinds[i])
		}
	}
	if len(missed) == 0 {
		return benchenv.Met(true)
	}
	return benchenv.Met(false) + " (" + strings.Join(missed, ", ") + ")"
}

// examined is the bytes the pass looked at: what the dedup stage hashed,
// or what the compress stage examined if more. Data the VM wrote
// compressed is hashed, not compressed again; revisions are compressed,
// not hashed.
func (p pass) examined() int64 { return max(p.Examined, p.Hashed) }

// examinedRate is the bytes the volume's job examined per second of it.
func (v volumeUpdate) examinedRate() float64 {
	if job := v.Pass.Job(); job > 0 {
		return float64(v.Pass.examined()) / job.Seconds()
	}
	return 0
}

func rateString(r float64) string { return fmt.Sprintf("%.0f MiB/s", r/(1<<20)) }

// mibPerMiB formats n bytes per MiB of changed bytes.
func mibPerMiB(n, changed int64) string {
	if changed <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f MiB", float64(n)/float64(changed))
}

// cpuPerMiB formats CPU time per MiB of changed bytes.
func cpuPerMiB(cpu time.Duration, changed int64) string {
	if changed <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", 1000*cpu.Seconds()/(float64(changed)/(1<<20)))
}

func footnotes(w io.Writer) {
	for _, line := range []string{
		"Estimated beforehand: btrfs-vdo estimate on the pool before the first pass (95% interval), cold caches.",
		"Bytes freed: compsize's disk usage of the pool's volume files before the pass minus after it.",
		"Sharing kept: 1 - sharing lost / bytes of the images in the same extents as their newest revisions",
		"before the pass. Sharing lost: growth of the revisions' data stored apart from their images' (a range",
		"punched from, or rewritten into, image and revision alike is no loss). Changed bytes: the updated",
		"images' data not shared with their revisions.",
		"Speed-up, informational: duperemove's rerun (every file again, against its hashfile) against the jobs",
		"the commits queued, from each stop's return to its job's end (polled every 5 ms); the commits",
		"themselves are the same on both sides and untimed on duperemove's.",
		"Caches are dropped before each pass. duperemove: its own rusage (CPU, maxrss, inblock); btrfs-vdo:",
		"the daemon's /proc figures (CPU with the CLI's, read_bytes, VmHWM reset at the pass's start).",
		"The update's work: the update round (the same volumes, the same share of each) done twice on the",
		"btrfs-vdo side after its first pass: through the daemon (start, write into the dirty images, stop;",
		"each commit queues a job), then again committed as file-reflink commits (reflink the image to a",
		"revision, rename the dirty image over it) and followed by optimize --full of each updated volume.",
		"Each volume's commit and job, or its optimize --full, is a pass of its own with caches dropped.",
		"Then, measuring the pool: what the daemon read after the pass until the measurement of the whole",
		"pool for qvm-pool info that follows the jobs, in the background, was written; not in the pass's reads.",
		"Cold pass: optimize --cold over the pool between the two update rounds, caches dropped; its usage is",
		"judged against the ideal bound after the update round through the daemon, the data the pass sees.",
		"Examined: the larger of the daemon's compress_bytes_examined and dedup_bytes_hashed counters over",
		"the pass (data a VM wrote compressed is only hashed). Wall time of the job: from the stop's",
		fmt.Sprintf("return, or the optimize's start, to the job's end. This machine has %d CPUs.", runtime.NumCPU()),
	} {
		fmt.Fprintln(w, line)
	}
}

func percent(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) }

// speedup is how many times faster b ran than a.
func speedup(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fx", a.Seconds()/b.Seconds())
}
