// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

const optimizeUsage = `Usage: btrfs-vdo optimize [--full|--cold] [--no-wait] [--json] [--bytes] TARGET

Deduplicate and compress the volumes of TARGET in the background without
unsharing any extent, and wait until it is done (a progress bar on a
terminal, a progress line every few seconds otherwise), then show what each
volume's job did. TARGET is a pool the daemon knows (its name or
directory), a VM's name, or POOL:VID; templates go first.

Without --full only data not yet optimized is examined. --full remembers
how far it got in each file: interrupted, it resumes at the file it was
working on. Run again, it reads only data written since the volume's last
job, even in files commits made without the daemon put in place; the first
full pass over a volume, and the first after an import, reads it whole.

--cold recompresses now, at cold_zstd_level, every compressed extent (and
every uncompressed one files reference only in part) of the volumes' images
and revisions not yet through a cold pass, as the daemon
does in idle time once data is cold (see btrfs-vdo.toml(5)); nothing is
unshared. A volume with a job pending gets its cold pass after that job,
and this command waits for the job only.

The jobs belong to the daemon: interrupting this command (Ctrl-C) leaves
them running, and "btrfs-vdo jobs --wait" follows them. A job whose VM
starts is held until the VM's next commit. Exit status 1 if any job failed.
`

// optimizeReport is optimize --json's output: the jobs queued, and once
// waited for, their outcomes and the jobs held because their VM started.
type optimizeReport struct {
	Queued   []api.QueuedJob  `json:"queued"`
	Outcomes []api.JobOutcome `json:"outcomes,omitempty"`
	Held     []api.QueuedJob  `json:"held,omitempty"`
}

func optimize(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("optimize", optimizeUsage)
	full := fs.Bool("full", false, "rewrite every uncompressed extent, also those shared with revisions and precaches, and the revisions")
	cold := fs.Bool("cold", false, "recompress compressed extents at the cold level now, whatever their age")
	noWait := fs.Bool("no-wait", false, "queue the jobs and return at once")
	var out outputFlags
	out.register(fs)
	if err := parseFlags(fs, args, stdout, argCount{1, 1, "one TARGET"}); err != nil {
		return err
	}
	if *full && *cold {
		return usageError{errors.New("--full and --cold do not go together")}
	}
	var queued api.OptimizeResult
	if err := call(api.OpOptimize, api.OptimizeArgs{Target: fs.Arg(0), Full: *full, Cold: *cold}, &queued); err != nil {
		return err
	}
	report := optimizeReport{Queued: queued.Queued}
	if *noWait || len(queued.Queued) == 0 {
		if out.json {
			return writeJSON(stdout, report)
		}
		return printQueued(stdout, queued.Queued)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tr := newTracker(queued.Queued)
	if err := tr.wait(ctx, newProgress(stderr, len(queued.Queued))); err != nil {
		if ctx.Err() != nil {
			return interrupted{len(queued.Queued) - len(tr.outcomes)}
		}
		return err
	}
	report.Outcomes, report.Held = tr.results()
	if out.json {
		if err := writeJSON(stdout, report); err != nil {
			return err
		}
	} else if err := printOptimized(stdout, report, out.sizes()); err != nil {
		return err
	}
	return failedJobs(report.Outcomes)
}

// interrupted ends a command that was waiting for jobs; they go on.
type interrupted struct{ jobs int }

func (e interrupted) Error() string {
	return fmt.Sprintf("interrupted: %s in the background; follow with \"btrfs-vdo jobs --wait\"",
		plural(e.jobs, "job continues", "jobs continue"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func printQueued(w io.Writer, queued []api.QueuedJob) error {
	if len(queued) == 0 {
		_, err := fmt.Fprintln(w, "nothing to optimize: no volumes")
		return err
	}
	t := newTable("rl", "ID", "VOLUME")
	for _, q := range queued {
		t.add(fmt.Sprint(q.ID), q.Pool+":"+q.VID)
	}
	if err := t.write(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "queued %s; follow with \"btrfs-vdo jobs --wait\"\n", plural(len(queued), "job", "jobs"))
	return err
}

func failedJobs(outcomes []api.JobOutcome) error {
	var errs []error
	for _, o := range outcomes {
		if o.Error != "" {
			errs = append(errs, fmt.Errorf("%s:%s: %s", o.Pool, o.VID, o.Error))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d jobs failed: %w", len(errs), len(outcomes), errors.Join(errs...))
}

func printOptimized(w io.Writer, r optimizeReport, sz sizes) error {
	t := outcomeTable(r.Outcomes, sz)
	for _, h := range r.Held {
		t.add(fmt.Sprint(h.ID), h.Pool+":"+h.VID, "", "", "", "", "held: the VM started; continues after its next commit")
	}
	if err := t.write(w); err != nil {
		return err
	}
	var saved int64
	for _, o := range r.Outcomes {
		saved += o.BytesSaved
	}
	_, err := fmt.Fprintf(w, "saved %s on disk\n", sz.signed(saved))
	return err
}

// outcomeTable lists finished jobs, by volume.
func outcomeTable(outcomes []api.JobOutcome, sz sizes) *table {
	t := newTable("rlrrrrl", "ID", "VOLUME", "EXAMINED", "COMPRESSED", "SAVED", "LEFT SHARED", "RESULT")
	for _, o := range outcomes {
		result := "ok"
		if o.Error != "" {
			result = "failed: " + o.Error
		}
		t.add(fmt.Sprint(o.ID), o.Pool+":"+o.VID, sz.of(o.BytesExamined), sz.of(o.BytesCompressed),
			sz.signed(o.BytesSaved), sz.of(o.SkippedShared), result)
	}
	return t
}

func byVolume[T any](items []T, ref func(T) api.VolumeRef) {
	slices.SortStableFunc(items, func(a, b T) int {
		ra, rb := ref(a), ref(b)
		return cmp.Or(cmp.Compare(ra.Pool, rb.Pool), cmp.Compare(ra.DirPath, rb.DirPath), cmp.Compare(ra.VID, rb.VID))
	})
}
