// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"context"
	"errors"
	"sync"
	"time"
)

// IdleRelease is how often the daemon lets go of what it holds open in
// pools without jobs: their directory's descriptor and dedup index file
// (the index stays in memory a while; see the optimizer). A pool's
// filesystem can then be unmounted once its VMs are stopped and its jobs
// done; the next request opens what it needs again.
const IdleRelease = 5 * time.Second

// Serve runs, until ctx is done, what serves the registry's pools beside
// their requests: its housekeeping (Run, every IdleRelease) and its
// optimizer's workers, if it has one; jobs stop at their next chunk.
// wait returns once both have ended; closing the registry is left to the
// caller.
func (r *Registry) Serve(ctx context.Context) (wait func()) {
	var running sync.WaitGroup
	running.Add(1)
	go func() { defer running.Done(); r.Run(ctx, IdleRelease) }()
	if r.optimizer != nil {
		running.Add(1)
		go func() { defer running.Done(); r.optimizer.Run(ctx) }()
	}
	return running.Wait
}

// Run keeps the registry's housekeeping until ctx is done: it releases
// idle pools' descriptors every period, and has the optimizer's totals
// written after its jobs finish.
func (r *Registry) Run(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	var changed <-chan struct{} // nil without an optimizer: never ready
	if r.optimizer != nil {
		changed = r.optimizer.Changed()
	}
	// Jobs that finished before Run began count too.
	r.mu.Lock()
	finished := r.remembered.Counters.Finished()
	r.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.releaseIdle()
		case <-changed:
			changed = r.optimizer.Changed()
			if n := r.optimizer.Counters().Finished(); n != finished {
				finished = n
				r.saveTotalsSoon()
			}
		}
	}
}

func (r *Registry) releaseIdle() {
	r.mu.Lock()
	pools := make([]*Pool, 0, len(r.pools))
	for _, p := range r.pools {
		pools = append(pools, p)
	}
	r.mu.Unlock()
	for _, p := range pools {
		if !p.Optimizer.ReleaseIfIdle() {
			continue
		}
		if err := errors.Join(p.stateDir.Release(), p.dir.Release()); err != nil {
			p.log.Warn("cannot release pool directory", "pool", p.Name, "err", err)
		}
	}
}
