package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/client"
)

// pollInterval is how often a waiting command asks the daemon for progress.
const pollInterval = 500 * time.Millisecond

func optimize(c *client.Client, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("optimize", `Usage: btrfs-vdo optimize [--full] [--no-wait] [--json] TARGET

Deduplicate and compress the volumes of TARGET in the background without
unsharing any extent, and wait until it is done (a progress bar on a terminal, progress
lines otherwise). TARGET is a pool's name or directory, a VM's name, or
POOL:VID; templates go first. Without --full only data not yet optimised
is examined. Interrupted work resumes when the daemon restarts. --full
remembers how far it got in each file: interrupted, it resumes at the
file it was working on, and run again it reads only what was written
into each file since; a file replaced since (a commit, a revert) is read
whole.

`, stderr)
	full := fs.Bool("full", false, "rewrite every uncompressed extent, also those shared with revisions and precaches, and the revisions")
	noWait := fs.Bool("no-wait", false, "queue the work and return at once")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{fmt.Errorf("optimize takes one TARGET")}
	}
	began := time.Now().Add(-time.Second).UTC()
	var queued api.OptimizeResult
	if err := call(c, api.OpOptimize, api.OptimizeArgs{Target: fs.Arg(0), Full: *full}, &queued); err != nil {
		return err
	}
	if *noWait {
		if *asJSON {
			return writeJSON(stdout, queued)
		}
		fmt.Fprintf(stdout, "queued %d volumes\n", len(queued.Queued))
		return nil
	}
	outcomes, err := waitForJobs(c, queued.Queued, began, isTerminal(stdout), stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, outcomes)
	}
	return printOutcomes(stdout, outcomes)
}

// waitForJobs polls until none of vols has a queued or running job, then
// returns their outcomes since began.
func waitForJobs(c *client.Client, vols []api.VolumeRef, began time.Time, tty bool, progressOut io.Writer) ([]api.JobOutcome, error) {
	want := map[api.VolumeRef]bool{}
	for _, v := range vols {
		want[v] = true
	}
	var bar *progressbar.ProgressBar
	lastLine := time.Now()
	for {
		var jobs api.JobsResult
		if err := call(c, api.OpJobs, api.JobsArgs{}, &jobs); err != nil {
			return nil, err
		}
		var done, total uint64
		pending := 0
		for _, j := range jobs.Jobs {
			if want[j.VolumeRef] && j.State != "held" {
				pending++
				done, total = done+j.DoneBytes, total+j.TotalBytes
			}
		}
		if pending == 0 {
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(progressOut)
			}
			return outcomesSince(jobs.Recent, want, began), nil
		}
		switch {
		case tty:
			if bar == nil {
				bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(progressOut),
					progressbar.OptionShowBytes(true), progressbar.OptionSetDescription("optimising"),
					progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
			}
			if total > 0 {
				bar.ChangeMax64(int64(total))
				_ = bar.Set64(int64(done))
			}
		case time.Since(lastLine) >= 5*time.Second:
			fmt.Fprintf(progressOut, "optimising: %d volumes pending, %s of %s examined\n",
				pending, humanBytes(int64(done)), humanBytes(int64(total)))
			lastLine = time.Now()
		}
		time.Sleep(pollInterval)
	}
}

func outcomesSince(recent []api.JobOutcome, want map[api.VolumeRef]bool, began time.Time) []api.JobOutcome {
	out := []api.JobOutcome{}
	for _, o := range recent {
		finished, err := time.Parse(time.RFC3339, o.Finished)
		if err == nil && want[o.VolumeRef] && !finished.Before(began) {
			out = append(out, o)
		}
	}
	return out
}

func printOutcomes(w io.Writer, outcomes []api.JobOutcome) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tEXAMINED\tCOMPRESSED\tSAVED\tLEFT SHARED\tERROR")
	var saved int64
	for _, o := range outcomes {
		saved += o.BytesSaved
		fmt.Fprintf(tw, "%s:%s\t%s\t%s\t%s\t%s\t%s\n", o.Pool, o.VID, humanBytes(int64(o.BytesExamined)),
			humanBytes(int64(o.BytesCompressed)), humanBytes(o.BytesSaved), humanBytes(int64(o.SkippedShared)), o.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "saved %s on disk\n", humanBytes(saved))
	return nil
}

func jobs(c *client.Client, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("jobs", `Usage: btrfs-vdo jobs [--json] [--wait]

List the optimiser's jobs: queued, running, held (the volume started before
its job finished; it continues after the next commit) or paused, then the
recently finished ones and the totals since the daemon started.

`, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	wait := fs.Bool("wait", false, "wait until no job is queued or running")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *wait {
		if err := waitIdle(c); err != nil {
			return err
		}
	}
	var res api.JobsResult
	if err := call(c, api.OpJobs, api.JobsArgs{}, &res); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tSTATE\tPROGRESS\tQUEUED")
	for _, j := range res.Jobs {
		fmt.Fprintf(tw, "%s:%s\t%s\t%s/%s\t%s\n", j.Pool, j.VID, j.State,
			humanBytes(int64(j.DoneBytes)), humanBytes(int64(j.TotalBytes)), j.Queued)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res.Recent) > 0 {
		fmt.Fprintln(stdout, "\nrecently finished:")
		if err := printOutcomes(stdout, res.Recent); err != nil {
			return err
		}
	}
	k := res.Counters
	fmt.Fprintf(stdout, "\nsince start: %d jobs done, %d failed; examined %s, compressed %s, saved %s, left shared %s\n",
		k.JobsDone, k.JobsFailed, humanBytes(int64(k.BytesExamined)), humanBytes(int64(k.BytesCompressed)),
		humanBytes(k.BytesSaved), humanBytes(int64(k.SkippedShared)))
	fmt.Fprintf(stdout, "dedup: %d tries, %d hits, %d misses; hashed %s, freed %s, rewrote %s, kept %s that would grow, %d ms in dedupe, %d zero blocks punched\n",
		k.DedupTries, k.DedupHits, k.DedupMisses, humanBytes(int64(k.DedupBytesHashed)),
		humanBytes(int64(k.DedupBytesFreed)), humanBytes(int64(k.DedupBytesRewritten)),
		humanBytes(int64(k.DedupKeptWouldGrow)), k.DedupIoctlMs, k.ZeroBlocksPunched)
	return nil
}

// waitIdle polls until no job is queued or running.
func waitIdle(c *client.Client) error {
	for {
		var res api.JobsResult
		if err := call(c, api.OpJobs, api.JobsArgs{}, &res); err != nil {
			return err
		}
		busy := false
		for _, j := range res.Jobs {
			busy = busy || j.State == "queued" || j.State == "running"
		}
		if !busy {
			return nil
		}
		time.Sleep(pollInterval)
	}
}

func stats(c *client.Client, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("stats", `Usage: btrfs-vdo stats [--json] [POOL | VM | POOL:VID]

Space used per volume, per VM and per pool, counted as compsize counts it:
each physical extent once within a row. DISK is the space on disk,
UNCOMPRESSED what that data takes uncompressed, REFERENCED what the files
reference (more than UNCOMPRESSED when extents are shared, as between an
image and its revisions). SHARED is disk space the row shares with files
outside it, EXCLUSIVE what would be freed if the row's files went.

`, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError{fmt.Errorf("stats takes at most one target")}
	}
	var res api.StatsResult
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := c.Call(ctx, api.OpStats, api.StatsArgs{Target: fs.Arg(0)}, &res); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tDISK\tUNCOMPRESSED\tREFERENCED\tRATIO\tSHARED\tEXCLUSIVE\t")
	for _, group := range []struct {
		title string
		rows  []api.UsageRow
	}{{"pool", res.Pools}, {"vm", res.VMs}, {"volume", res.Volumes}} {
		for _, r := range group.rows {
			ratio := "-"
			if r.UncompressedBytes > 0 {
				ratio = fmt.Sprintf("%.0f%%", 100*float64(r.DiskBytes)/float64(r.UncompressedBytes))
			}
			fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", group.title, r.Name, humanBytes(int64(r.DiskBytes)),
				humanBytes(int64(r.UncompressedBytes)), humanBytes(int64(r.ReferencedBytes)), ratio,
				humanBytes(int64(r.SharedBytes)), humanBytes(int64(r.ExclusiveBytes)))
		}
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether w is a terminal, where progress bars go.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}
