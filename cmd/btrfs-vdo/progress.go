// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// pollInterval is how often a waiting command asks the daemon for
// progress once the work has gone on for a while.
const pollInterval = 500 * time.Millisecond

// quickPoll is how often a waiting command asks during its first
// quickPolls polls, two seconds. Most jobs a command waits for, a
// commit's changes, take tens to hundreds of milliseconds: the command
// returns within quickPoll of their end, while a long run costs the
// daemon two requests a second.
const (
	quickPoll  = 20 * time.Millisecond
	quickPolls = 100
)

// pollDelays returns the delays between a waiting command's polls.
func pollDelays() func() time.Duration {
	polls := 0
	return func() time.Duration {
		if polls++; polls <= quickPolls {
			return quickPoll
		}
		return pollInterval
	}
}

// lineInterval is how often progress is printed when stderr is no
// terminal; tests shorten it.
var lineInterval = 5 * time.Second

// tracker follows the jobs of one optimize request by id, until each has
// an outcome or is held.
type tracker struct {
	queued   []api.QueuedJob
	outcomes map[uint64]api.JobOutcome // kept across polls: Recent is bounded
	held     map[uint64]bool
}

func newTracker(queued []api.QueuedJob) *tracker {
	return &tracker{queued: queued, outcomes: map[uint64]api.JobOutcome{}, held: map[uint64]bool{}}
}

// poll reads the daemon's jobs and returns how many of the tracked jobs'
// worth is done, each counting 1 once finished or held, a share of 1 by
// its bytes while it runs, and whether all are.
func (t *tracker) poll(res api.JobsResult) (done float64, finished bool) {
	for _, o := range res.Recent {
		if t.tracks(o.ID) {
			t.outcomes[o.ID] = o
		}
	}
	pending := map[uint64]api.JobInfo{}
	for _, j := range res.Jobs {
		pending[j.ID] = j
	}
	finished = true
	for _, q := range t.queued {
		j, isPending := pending[q.ID]
		t.held[q.ID] = isPending && j.State == api.JobHeld
		switch _, ended := t.outcomes[q.ID]; {
		case ended || !isPending || t.held[q.ID]:
			// Gone without an outcome: it ended while Recent moved past it.
			done++
		case j.State == api.JobRunning && j.TotalBytes > 0:
			done += float64(min(j.DoneBytes, j.TotalBytes)) / float64(j.TotalBytes)
			finished = false
		default:
			finished = false
		}
	}
	return done, finished
}

func (t *tracker) tracks(id uint64) bool {
	for _, q := range t.queued {
		if q.ID == id {
			return true
		}
	}
	return false
}

// results returns the outcomes of the tracked jobs and the jobs held, by
// volume.
func (t *tracker) results() ([]api.JobOutcome, []api.QueuedJob) {
	outcomes, held := []api.JobOutcome{}, []api.QueuedJob{}
	for _, q := range t.queued {
		if o, ok := t.outcomes[q.ID]; ok {
			outcomes = append(outcomes, o)
		} else if t.held[q.ID] {
			held = append(held, q)
		}
	}
	byVolume(outcomes, func(o api.JobOutcome) api.VolumeRef { return o.VolumeRef })
	byVolume(held, func(q api.QueuedJob) api.VolumeRef { return q.VolumeRef })
	return outcomes, held
}

// wait polls the daemon until every tracked job is over or held, telling
// show its progress.
func (t *tracker) wait(ctx context.Context, show progress) error {
	delay := pollDelays()
	for {
		var res api.JobsResult
		if err := call(api.OpJobs, api.JobsArgs{}, &res); err != nil {
			return err
		}
		done, finished := t.poll(res)
		show.update(done)
		if finished {
			show.finish()
			return nil
		}
		select {
		case <-ctx.Done():
			show.stop()
			return ctx.Err()
		case <-time.After(delay()):
		}
	}
}

// progress shows how many of a fixed number of volumes are done.
type progress interface {
	update(volumesDone float64)
	finish() // all done
	stop()   // interrupted: leave the progress as it was
}

// newProgress returns a progress bar on a terminal, else a line every
// lineInterval, both counting out of the volumes queued.
func newProgress(w io.Writer, volumes int) progress {
	if isTerminal(w) {
		return &barProgress{w: w, volumes: volumes, bar: progressbar.NewOptions64(int64(volumes)*1000,
			progressbar.OptionSetWriter(w), progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(30), progressbar.OptionSetDescription(fmt.Sprintf("optimizing 0/%d volumes", volumes)))}
	}
	return &lineProgress{w: w, volumes: volumes, last: time.Now()}
}

// barProgress counts thousandths of a volume.
type barProgress struct {
	w       io.Writer
	volumes int
	bar     *progressbar.ProgressBar
}

func (p *barProgress) update(done float64) {
	p.bar.Describe(fmt.Sprintf("optimizing %d/%d volumes", int(done), p.volumes))
	_ = p.bar.Set64(int64(done * 1000))
}

func (p *barProgress) finish() {
	_ = p.bar.Finish()
	fmt.Fprintln(p.w)
}

func (p *barProgress) stop() {
	_ = p.bar.Exit()
	fmt.Fprintln(p.w)
}

type lineProgress struct {
	w       io.Writer
	volumes int
	last    time.Time
}

func (p *lineProgress) update(done float64) {
	if time.Since(p.last) < lineInterval {
		return
	}
	fmt.Fprintf(p.w, "optimizing: %d of %d volumes done, %.0f%%\n", int(done), p.volumes, 100*done/float64(p.volumes))
	p.last = time.Now()
}

func (p *lineProgress) finish() {}

func (p *lineProgress) stop() {}

// isTerminal reports whether w is a terminal, where progress bars go.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
