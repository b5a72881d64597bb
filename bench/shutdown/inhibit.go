// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"sync"
	"time"
)

// readOnlyOps are operations that change nothing: a hold looks for the
// dirty image, a job's settle lists the extents it made. Reported to the
// Writing hook, they would hold the lock without writing. (A plan may set
// an image's compression flag and commit.)
var readOnlyOps = map[string]bool{"hold": true, "measure": true}

// inhibitClock is the pool's Writing hook, as btrfs-vdod wires it to
// bus.Inhibitor: the logind delay lock is held from the moment one
// operation begins with none under way to the moment the last ends. It
// times that, and the part of it during which an operation that writes
// was under way.
type inhibitClock struct {
	mu                sync.Mutex
	writers, changing int // operations under way, and those that write
	since             time.Time
	held, writing     time.Duration
	takes             int // times the lock was taken
}

// Writing is the volume.Hooks.Writing hook.
func (c *inhibitClock) Writing(op, vid string) (done func()) {
	changes := !readOnlyOps[op]
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick()
	if c.writers == 0 {
		c.takes++
	}
	c.writers++
	if changes {
		c.changing++
	}
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.tick()
		c.writers--
		if changes {
			c.changing--
		}
	})
}

// tick charges the time since the last change; c.mu is held.
func (c *inhibitClock) tick() {
	now := time.Now()
	if c.writers > 0 {
		c.held += now.Sub(c.since)
	}
	if c.changing > 0 {
		c.writing += now.Sub(c.since)
	}
	c.since = now
}

// inhibitTimes is what an inhibitClock measured over a span.
type inhibitTimes struct {
	held, writing time.Duration
	takes         int
}

// read returns the totals so far.
func (c *inhibitClock) read() inhibitTimes {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick()
	return inhibitTimes{held: c.held, writing: c.writing, takes: c.takes}
}

// since is what was measured after before was read.
func (t inhibitTimes) since(before inhibitTimes) inhibitTimes {
	return inhibitTimes{held: t.held - before.held, writing: t.writing - before.writing, takes: t.takes - before.takes}
}
