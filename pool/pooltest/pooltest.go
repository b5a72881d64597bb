// SPDX-License-Identifier: GPL-2.0-or-later

// Package pooltest starts a registry of pools and its optimizer as the
// daemon does, for tests of the packages that use them.
package pooltest

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Options say what to start.
type Options struct {
	// Optimizer configures the scheduler; nil starts none, so commits are
	// not optimized.
	Optimizer *optimizer.SchedulerConfig
	// StateDir is the daemon's state directory; "" remembers nothing.
	StateDir string
	// Writing and OnDone are the volume operations' and the finished
	// jobs' hooks; either may be nil.
	Writing func(op, vid string) (done func())
	OnDone  func(optimizer.JobDone)
	// Log defaults to a logger that discards.
	Log *slog.Logger
}

// Daemon is a registry whose pools the daemon remembered are open, with
// its scheduler and housekeeping running.
type Daemon struct {
	Pools *pool.Registry
	Jobs  *optimizer.Scheduler // nil without Options.Optimizer
	stop  func()
}

// Start starts a Daemon, stopped when the test ends if not before.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	if o.Log == nil {
		o.Log = logtest.Discard()
	}
	d := &Daemon{}
	if o.Optimizer != nil {
		d.Jobs = optimizer.NewScheduler(*o.Optimizer, o.Log, o.OnDone)
	}
	pools, err := pool.NewRegistry(pool.Config{Log: o.Log, Writing: o.Writing, Optimizer: d.Jobs, StateDir: o.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	d.Pools = pools
	pools.Restore()
	ctx, cancel := context.WithCancel(context.Background())
	served := pools.Serve(ctx)
	d.stop = sync.OnceFunc(func() {
		cancel()
		served()
		if err := pools.Close(); err != nil {
			t.Errorf("close the pools: %v", err)
		}
	})
	t.Cleanup(d.stop)
	return d
}

// Stop stops the jobs and closes the pools, as a daemon exit does.
func (d *Daemon) Stop() { d.stop() }

// Harness is a pool on a real btrfs served by a Daemon with an optimizer,
// which a test may stop and start again as a daemon restart does.
type Harness struct {
	T     *testing.T
	Dir   string // the pool directory
	State string // the daemon's state directory
	Pools *pool.Registry
	Jobs  *optimizer.Scheduler
	P     *pool.Pool
	d     *Daemon
	cfg   optimizer.SchedulerConfig

	mu     sync.Mutex
	onDone func(optimizer.JobDone)
}

// NewHarness sets up a pool on a fresh 1 GiB btrfs and starts a Daemon
// on it, its jobs at idle I/O priority.
func NewHarness(t *testing.T) *Harness {
	t.Helper()
	return NewHarnessWith(t, optimizer.SchedulerConfig{IdleIO: true})
}

// NewHarnessWith is NewHarness with the optimizer configured by cfg.
func NewHarnessWith(t *testing.T, cfg optimizer.SchedulerConfig) *Harness {
	t.Helper()
	dir := filepath.Join(btrfstest.Mount(t, 1<<30), "pool")
	if _, err := pool.Setup(dir, true); err != nil {
		t.Fatal(err)
	}
	h := &Harness{T: t, Dir: dir, State: t.TempDir(), cfg: cfg}
	h.Open()
	return h
}

// Open starts a Daemon on the pool, as a daemon start does: the pool is
// opened from the daemon's memory of it, or as qubesd's first request
// opens it the first time.
func (h *Harness) Open() {
	h.T.Helper()
	cfg := h.cfg
	h.d = Start(h.T, Options{Optimizer: &cfg, StateDir: h.State, OnDone: h.done})
	h.Pools, h.Jobs = h.d.Pools, h.d.Jobs
	if pools := h.Pools.List(); len(pools) == 1 {
		h.P = pools[0]
		return
	}
	p, err := h.Pools.Open("vdo", h.Dir)
	if err != nil {
		h.T.Fatal(err)
	}
	h.P = p
}

// OnDone has the scheduler tell fn of each finished job, before the
// job's worker goes on; nil tells no one. It may be set while jobs run.
func (h *Harness) OnDone(fn func(optimizer.JobDone)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onDone = fn
}

func (h *Harness) done(d optimizer.JobDone) {
	h.mu.Lock()
	fn := h.onDone
	h.mu.Unlock()
	if fn != nil {
		fn(d)
	}
}

// Close stops the Daemon.
func (h *Harness) Close() { h.d.Stop() }

// Wait waits for every queued job to finish.
func (h *Harness) Wait() {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.Jobs.Wait(ctx); err != nil {
		h.T.Fatalf("jobs did not finish: %v %+v", err, h.Jobs.Jobs())
	}
}

// Path is the path of name beneath the pool directory.
func (h *Harness) Path(name string) string { return filepath.Join(h.Dir, name) }

// Must fails the test on a volume operation's error.
func (h *Harness) Must(_ volume.State, err error) {
	h.T.Helper()
	if err != nil {
		h.T.Fatal(err)
	}
}

// CommitText starts the volume, writes n bytes of text into its dirty
// image as a VM would, and stops it: a commit, and a job after it.
func (h *Harness) CommitText(s volume.Spec, n int) {
	h.T.Helper()
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(h.T, h.Path(s.VID+"-dirty.img"), 0, btrfstest.Text(s.VID, n))
	h.Must(h.P.Volumes.Stop(s))
}
