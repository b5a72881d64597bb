// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
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

// stageOrder is the order the pipeline's stages print in; the counters
// of stages not named here (of a newer daemon) follow, by name.
var stageOrder = []string{"job", "dedup", "compress"}

// printCounters writes the counters one line per stage (the prefix of
// their names), by name within a stage, with sizes for byte counts.
func printCounters(w io.Writer, counters api.OptimizerCounters, sz sizes) error {
	byStage := map[string][]string{}
	for name := range counters {
		stage, _, _ := strings.Cut(name, "_")
		byStage[stage] = append(byStage[stage], name)
	}
	stages := slices.Sorted(maps.Keys(byStage))
	slices.SortStableFunc(stages, func(a, b string) int { return cmp.Compare(stageRank(a), stageRank(b)) })
	fmt.Fprintln(w, "\nsince start:")
	for _, stage := range stages {
		names := byStage[stage]
		slices.Sort(names)
		line := make([]string, len(names))
		for i, name := range names {
			value := fmt.Sprint(counters[name])
			if strings.Contains(name, "bytes") {
				value = sz.signed(counters[name])
			}
			line[i] = strings.TrimPrefix(name, stage+"_") + " " + value
		}
		if _, err := fmt.Fprintf(w, "  %s: %s\n", stage, strings.Join(line, ", ")); err != nil {
			return err
		}
	}
	return nil
}

// stageRank places the stages of stageOrder first, in its order.
func stageRank(stage string) int {
	if i := slices.Index(stageOrder, stage); i >= 0 {
		return i
	}
	return len(stageOrder)
}

// waitIdle polls until no job is queued or running; held and paused jobs
// wait for something else.
func waitIdle(ctx context.Context) error {
	delay := pollDelays()
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
		case <-time.After(delay()):
		}
	}
}
