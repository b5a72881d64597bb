// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"sync"
	"time"
)

// inhibitClock is the pool's Writing hook, counting as bus.Inhibitor
// does: the logind delay lock is held from the moment one operation that
// writes begins with none under way to the moment the last ends. Work
// that only reads under a volume's lock (volume.Store.ReadLocked) never
// reaches the hook, so the lock is held no longer than the writes by
// construction; the clock tells how long and how often.
type inhibitClock struct {
	mu      sync.Mutex
	writers int // operations under way
	since   time.Time
	held    time.Duration
	takes   int // times the lock was taken
}

// Writing is the volume.Hooks.Writing hook.
func (c *inhibitClock) Writing(op, vid string) (done func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick()
	if c.writers == 0 {
		c.takes++
	}
	c.writers++
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.tick()
		c.writers--
	})
}

// tick charges the time since the last change; c.mu is held.
func (c *inhibitClock) tick() {
	now := time.Now()
	if c.writers > 0 {
		c.held += now.Sub(c.since)
	}
	c.since = now
}

// inhibitTimes is what an inhibitClock measured over a span.
type inhibitTimes struct {
	held  time.Duration
	takes int
}

// read returns the totals so far.
func (c *inhibitClock) read() inhibitTimes {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick()
	return inhibitTimes{held: c.held, takes: c.takes}
}

// since is what was measured after before was read.
func (t inhibitTimes) since(before inhibitTimes) inhibitTimes {
	return inhibitTimes{held: t.held - before.held, takes: t.takes - before.takes}
}
