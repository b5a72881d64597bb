// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
)

// Phase is the cost of one pass.
type Phase struct {
	Note       string // why it was not measured, or a caveat
	Ran        bool
	Wall       time.Duration
	CPU        time.Duration // the tool's processes
	MachineCPU time.Duration // every CPU, kernel compression threads included
	// Commit is the part of Wall the commit took, for a pass that is a
	// commit and the job it queued (CommitAndWait).
	Commit time.Duration
}

// Job is the wall time of the pass after its commit.
func (p Phase) Job() time.Duration { return p.Wall - p.Commit }

// Clock reads a CPU time that grows with a side's work.
type Clock func() (time.Duration, error)

// Timed runs work and measures its wall and CPU time.
func Timed(cpu Clock, work func() error) (Phase, error) {
	m0, err := machineCPU()
	if err != nil {
		return Phase{}, err
	}
	c0, err := cpu()
	if err != nil {
		return Phase{}, err
	}
	start := time.Now()
	if err := work(); err != nil {
		return Phase{}, err
	}
	p := Phase{Ran: true, Wall: time.Since(start)}
	c1, err := cpu()
	if err != nil {
		return Phase{}, err
	}
	m1, err := machineCPU()
	if err != nil {
		return Phase{}, err
	}
	p.CPU, p.MachineCPU = c1-c0, m1-m0
	return p, nil
}

// OptimizeFull times btrfs-vdo optimize --full over dir: the CLI queues
// the work, the benchmark waits for it.
func (d *Daemon) OptimizeFull(ctx context.Context, dir string) (Phase, error) {
	return d.optimize(ctx, "--full", dir, dir, "")
}

// OptimizeCold times btrfs-vdo optimize --cold of the pool at dir: the
// cold pass of every volume, whatever its data's age.
func (d *Daemon) OptimizeCold(ctx context.Context, dir string) (Phase, error) {
	return d.optimize(ctx, "--cold", dir, dir, "")
}

// OptimizeFullVolume times btrfs-vdo optimize --full of the volume vid of
// the pool the corpus c is (SetupPool).
func (d *Daemon) OptimizeFullVolume(ctx context.Context, c *corpus.Corpus, vid string) (Phase, error) {
	return d.optimize(ctx, "--full", benchPool+":"+vid, c.Dir, vid)
}

// optimize times btrfs-vdo optimize with the pass flag (--full, --cold)
// of target, whose jobs run in the pool at dir, and waits for them all
// and, if vid is not "", for a job of vid.
func (d *Daemon) optimize(ctx context.Context, pass, target, dir, vid string) (Phase, error) {
	var outcomes []api.JobOutcome
	began := time.Now()
	p, err := Timed(d.CPU, func() error {
		if _, err := d.cli(ctx, "optimize", pass, "--no-wait", "--json", target); err != nil {
			return err
		}
		var err error
		outcomes, err = d.waitJobs(ctx, dir, vid, began)
		return err
	})
	if errors.Is(err, errNotAvailable) {
		return Phase{Note: "not available yet: " + err.Error()}, nil
	}
	p.Note = jobErrors(outcomes, vid)
	return p, err
}

// CommitAndWait stops the volume (the commit) and waits for the
// background job it queued.
func (d *Daemon) CommitAndWait(ctx context.Context, vol api.VolumeArgs) (Phase, error) {
	var outcomes []api.JobOutcome
	var waitErr error
	var commit time.Duration
	began := time.Now()
	p, err := Timed(d.CPU, func() error {
		if err := d.Call(ctx, api.OpVolumeStop, vol, nil); err != nil {
			return err
		}
		commit = time.Since(began)
		outcomes, waitErr = d.waitJobs(ctx, vol.Pool.DirPath, vol.Volume.VID, began)
		if errors.Is(waitErr, errNotAvailable) {
			return nil // the commit alone is still worth timing
		}
		return waitErr
	})
	p.Commit = commit
	if err != nil {
		return p, err
	}
	if waitErr != nil {
		p.Note = "commit only, no background job awaited: " + waitErr.Error()
		return p, nil
	}
	p.Note = jobErrors(outcomes, vol.Volume.VID)
	return p, nil
}

// jobErrors describes failed jobs among outcomes, and a missing job for
// vid when vid is not "".
func jobErrors(outcomes []api.JobOutcome, vid string) string {
	var notes []string
	found := vid == ""
	for _, o := range outcomes {
		found = found || o.VID == vid
		if o.Error != "" {
			notes = append(notes, fmt.Sprintf("job for %s failed: %s", o.VID, o.Error))
		}
	}
	if !found {
		notes = append(notes, fmt.Sprintf("no job for %s finished within %v of its commit going idle", vid, jobAppearWait))
	}
	return strings.Join(notes, "; ")
}
