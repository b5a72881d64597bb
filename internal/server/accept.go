// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"context"
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxConns bounds the connections served at once when
// Server.MaxConns is 0. Each costs a goroutine, a descriptor and up to a
// frame (api.MaxFrameBytes) of memory. qubesd sends a few requests for
// each VM it starts or stops, far fewer at once than this; the bound keeps
// a flood of clients from taking the descriptors that requests need for
// image files. Connections over it wait in the socket's listen backlog
// and are served in turn: a burst is slowed down, never refused.
const DefaultMaxConns = 64

// After a temporary accept error Serve waits before it tries again, from
// acceptBackoffFirst doubling up to acceptBackoffMax, as net/http does:
// out of descriptors, retrying at once would spin.
const (
	acceptBackoffFirst = 5 * time.Millisecond
	acceptBackoffMax   = time.Second
)

// temporaryAcceptErrors are the accept(2) errors that a later accept can
// get past: out of descriptors or memory for now, or a connection that
// the peer gave up before it was taken.
var temporaryAcceptErrors = []unix.Errno{
	unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.ECONNABORTED, unix.EPROTO,
}

// temporaryAcceptError reports whether err, from Accept, leaves the
// listener usable.
func temporaryAcceptError(err error) bool {
	for _, errno := range temporaryAcceptErrors {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// nextBackoff is the pause after a temporary accept error that followed
// a pause of prev (0 for the first error).
func nextBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		return acceptBackoffFirst
	}
	return min(2*prev, acceptBackoffMax)
}

// sleep waits for d, or less if ctx ends first; it reports whether the
// whole pause passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// connSlots is a semaphore of the connections served at once.
type connSlots struct {
	free    chan struct{}
	waiting bool // the last take had to wait; logged once per episode
}

func newConnSlots(n int) *connSlots {
	return &connSlots{free: make(chan struct{}, n)}
}

// take waits for a free slot, or until ctx ends; it reports whether it
// got one. atLimit is called when it has to wait and did not just before.
func (c *connSlots) take(ctx context.Context, atLimit func()) bool {
	select {
	case c.free <- struct{}{}:
		c.waiting = false
		return true
	default:
	}
	if !c.waiting {
		c.waiting = true
		atLimit()
	}
	select {
	case c.free <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// give frees a slot taken by take.
func (c *connSlots) give() { <-c.free }
