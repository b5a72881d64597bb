// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// InProcess is a pool named "bench" and its optimizer, run in the
// benchmark's own process and served as btrfs-vdod serves them
// (pool.Registry.Serve), for benchmarks that time what no request over
// the socket shows.
type InProcess struct {
	Sched *optimizer.Scheduler
	P     *pool.Pool
	reg   *pool.Registry
	stop  func()
}

// OpenInProcess sets up a pool at dir and opens it with its jobs at idle
// I/O priority; writing, which may be nil, is the volume operations'
// Writing hook.
func OpenInProcess(dir string, log *slog.Logger, writing func(op, vid string) (done func())) (*InProcess, error) {
	if _, err := pool.Setup(dir, true); err != nil {
		return nil, fmt.Errorf("set up pool %s: %w", dir, err)
	}
	ip := &InProcess{Sched: optimizer.NewScheduler(optimizer.SchedulerConfig{IdleIO: true}, log, nil)}
	var err error
	if ip.reg, err = pool.NewRegistry(pool.Config{Log: log, Optimizer: ip.Sched, Writing: writing}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := ip.reg.Serve(ctx)
	ip.stop = func() { cancel(); served() }
	if ip.P, err = ip.reg.Open("bench", dir); err != nil {
		ip.Close()
		return nil, err
	}
	return ip, nil
}

// Close stops the jobs and the housekeeping, waits for them and closes
// the pool.
func (ip *InProcess) Close() {
	ip.stop()
	if err := ip.reg.Close(); err != nil {
		Logf("close the pool: %v", err)
	}
}
