// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"sync/atomic"
	"time"
)

// lazyWrite is a state store's pending write of changes that may be lost
// in a crash; any write of the state, durable or not, carries them.
type lazyWrite struct {
	timer *time.Timer // set while changes wait
	// failed is told of a write that failed; nil drops the error.
	failed func(error)
	writes atomic.Uint64 // state files written, for tests
}

// written notes a write of the whole state: nothing waits any more.
func (l *lazyWrite) written() {
	l.writes.Add(1)
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
}

// updateSoon changes the state with fn and writes it within
// stateWriteDelay, with whatever else changed meanwhile. For changes a
// crash may lose at no cost beyond repeated work: an optimize request's
// job (the administrator sees it gone from jobs), a held or finished job.
func (s *stateStore) updateSoon(fn func(*state)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
	if s.lazy.timer == nil {
		s.lazy.timer = time.AfterFunc(stateWriteDelay, s.writePending)
	}
}

func (s *stateStore) writePending() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lazy.timer == nil {
		return // written meanwhile
	}
	if err := s.writeLocked(); err != nil && s.lazy.failed != nil {
		s.lazy.failed(err)
	}
}

// flush writes changes still waiting, before the pool closes.
func (s *stateStore) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lazy.timer == nil {
		return nil
	}
	return s.writeLocked()
}
