// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
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
			t.add(fmt.Sprint(j.ID), j.Pool+":"+j.VID, string(j.State), j.Queued, sz.of(j.DoneBytes)+"/"+sz.of(j.TotalBytes))
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
	return printCounters(w, res.Counters, sz)
}

// printCounters writes the counters one line per stage, in the order of
// the optimizer's table, with sizes for byte counts.
func printCounters(w io.Writer, counters api.OptimizerCounters, sz sizes) error {
	fmt.Fprintln(w, "\nsince start:")
	var stage string
	var line []string
	flush := func() error {
		if len(line) == 0 {
			return nil
		}
		_, err := fmt.Fprintf(w, "  %s: %s\n", stage, strings.Join(line, ", "))
		line = line[:0]
		return err
	}
	for _, k := range optimizer.AllCounters() {
		v, ok := counters[k.Name()]
		if !ok {
			continue
		}
		prefix, name, _ := strings.Cut(k.Name(), "_")
		if prefix != stage {
			if err := flush(); err != nil {
				return err
			}
			stage = prefix
		}
		value := fmt.Sprint(v)
		if strings.Contains(name, "bytes") {
			value = sz.signed(v)
		}
		line = append(line, name+" "+value)
	}
	return flush()
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
			if j.State == api.JobQueued || j.State == api.JobRunning {
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
