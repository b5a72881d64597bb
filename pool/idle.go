// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"context"
	"errors"
	"time"
)

// IdleRelease is how often the daemon lets go of what it holds open in
// pools without jobs: their directory's descriptor and dedup index. A
// pool's filesystem can then be unmounted once its VMs are stopped and
// its jobs done; the next request opens what it needs again.
const IdleRelease = 5 * time.Second

// ReleaseIdle releases idle pools' descriptors every period until ctx is
// done.
func (r *Registry) ReleaseIdle(ctx context.Context, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.releaseIdle()
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
		if p.sched == nil || p.sched.whileIdle(p, p.closeIdleIndex) {
			p.releaseDirs()
		}
	}
}

// releaseDirs releases the descriptors of the pool directory and its
// StateDir that the pool's parts hold; each opens its directory again
// when next used.
func (p *Pool) releaseDirs() {
	err := errors.Join(p.Volumes.Release(), p.usage.release(), p.stateDir.Release(), p.dir.Release())
	if err != nil {
		p.log.Warn("cannot release pool directory", "pool", p.Name, "err", err)
	}
}

// closeIdleIndex closes the dedup index; the next job opens it again.
func (p *Pool) closeIdleIndex() {
	if err := p.closeIndex(); err != nil {
		p.log.Warn("cannot close idle dedup index", "pool", p.Name, "err", err)
	}
}

// whileIdle runs fn if no job of p is queued or running, before any can
// start, and reports whether it did.
func (s *Scheduler) whileIdle(p *Pool, fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := p.Volumes.Dir()
	for key := range s.running {
		if key.dir == dir {
			return false
		}
	}
	for _, key := range s.queue {
		if key.dir == dir {
			return false
		}
	}
	fn()
	return true
}
