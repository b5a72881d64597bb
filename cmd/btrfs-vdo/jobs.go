// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

const jobsUsage = `Usage: btrfs-vdo jobs [--json] [--wait] [--bytes]

List the optimizer's jobs: queued, running, held (the volume started before
its job finished; it continues after the next commit) or paused, then the
recently finished ones and the totals since the daemon started. Each job
has an id; optimize prints the ids of the jobs it queued.
`

func jobs(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("jobs", jobsUsage)
	wait := fs.Bool("wait", false, "first wait until no job is queued or running")
	var out outputFlags
	out.register(fs)
	if err := parseFlags(fs, args, stdout, noArgs); err != nil {
		return err
	}
	if *wait {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := waitIdle(ctx); err != nil {
			return err
		}
	}
	var res api.JobsResult
	if err := call(api.OpJobs, api.JobsArgs{}, &res); err != nil {
		return err
	}
	if out.json {
		return writeJSON(stdout, res)
	}
	return printJobs(stdout, res, out.sizes())
}

func printJobs(w io.Writer, res api.JobsResult, sz sizes) error {
	if len(res.Jobs) == 0 {
		fmt.Fprintln(w, "no job queued or running")
	} else {
		t := newTable("rlllr", "ID", "VOLUME", "STATE", "QUEUED", "PROGRESS")
		for _, j := range res.Jobs {
			t.add(fmt.Sprint(j.ID), j.Pool+":"+j.VID, j.State, j.Queued, sz.of(j.DoneBytes)+"/"+sz.of(j.TotalBytes))
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	if len(res.Recent) > 0 {
		fmt.Fprintln(w, "\nrecently finished:")
		if err := outcomeTable(res.Recent, sz).write(w); err != nil {
			return err
		}
	}
	k := res.Counters
	fmt.Fprintf(w, "\nsince start: %d jobs done, %d failed; examined %s, compressed %s, saved %s, left shared %s\n",
		k.JobsDone, k.JobsFailed, sz.of(k.BytesExamined), sz.of(k.BytesCompressed), sz.signed(k.BytesSaved), sz.of(k.SkippedShared))
	_, err := fmt.Fprintf(w, "dedup: %d tries, %d hits, %d misses; hashed %s, freed %s, rewrote %s, kept %s that would grow, %d ms in dedupe, %d zero blocks punched\n",
		k.DedupTries, k.DedupHits, k.DedupMisses, sz.of(k.DedupBytesHashed), sz.of(k.DedupBytesFreed),
		sz.of(k.DedupBytesRewritten), sz.of(k.DedupKeptWouldGrow), k.DedupIoctlMs, k.ZeroBlocksPunched)
	return err
}

// waitIdle polls until no job is queued or running; held and paused jobs
// wait for something else.
func waitIdle(ctx context.Context) error {
	for {
		var res api.JobsResult
		if err := call(api.OpJobs, api.JobsArgs{}, &res); err != nil {
			return err
		}
		busy := 0
		for _, j := range res.Jobs {
			if j.State == "queued" || j.State == "running" {
				busy++
			}
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return interrupted{busy}
		case <-time.After(pollInterval):
		}
	}
}
