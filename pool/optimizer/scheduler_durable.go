// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import "sync"

// durablePuts are the jobs waiting to be written by putDurable: those
// that come while a batch is written go to disk together, in one write of
// each pool's state. Of twenty VMs stopped together, each commit then
// waits for at most two writes (about 5 ms each), not for all the others'.
type durablePuts struct {
	mu      sync.Mutex
	writing bool // a goroutine writes batches until none is left
	queue   []*durablePut
}

// durablePut is one job to record, and what came of it.
type durablePut struct {
	p       *Pool
	job     Job
	prepare func(*state, *Job)
	id      uint64
	err     error
	done    chan struct{}
}

// putDurable is put for a job that must survive a crash: it returns once
// the job is on disk, with prepare, if given, having set it up against
// the state. If the write fails, the job is undone in memory too, so that
// no job is listed that nothing will run, and the error returned; the
// jobs written with it in one batch fail with it.
func (s *Scheduler) putDurable(p *Pool, job Job, prepare func(*state, *Job)) (uint64, error) {
	put := &durablePut{p: p, job: job, prepare: prepare, done: make(chan struct{})}
	b := &s.durable
	b.mu.Lock()
	b.queue = append(b.queue, put)
	lead := !b.writing
	b.writing = true
	b.mu.Unlock()
	if lead {
		go s.writeDurable()
	}
	<-put.done
	if put.err != nil {
		return 0, put.err
	}
	return put.id, nil
}

// writeDurable writes the queued jobs, a batch at a time, until none is
// left.
func (s *Scheduler) writeDurable() {
	b := &s.durable
	for {
		b.mu.Lock()
		batch := b.queue
		b.queue = nil
		b.writing = len(batch) > 0
		b.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		s.writeBatch(batch)
	}
}

// writeBatch records a batch of jobs in their pools' states, each pool's
// in one durable write, and makes those written runnable.
func (s *Scheduler) writeBatch(batch []*durablePut) {
	var pools []*Pool
	byPool := map[*Pool][]*durablePut{}
	for _, put := range batch {
		if _, ok := byPool[put.p]; !ok {
			pools = append(pools, put.p)
		}
		byPool[put.p] = append(byPool[put.p], put)
	}
	s.mu.Lock()
	for _, p := range pools {
		puts := byPool[p]
		changes := make([]func(*state), len(puts))
		for i, put := range puts {
			changes[i] = s.jobChangeLocked(p, put.job, put.prepare, &put.id)
		}
		err := p.state.tryUpdate(func(st *state) {
			for _, change := range changes {
				change(st)
			}
		})
		for _, put := range puts {
			put.err = err
		}
	}
	s.cancelColdLocked("")
	s.mu.Unlock()
	for _, put := range batch {
		if put.err == nil {
			s.enqueue(put.p, put.job.VID)
		}
		close(put.done)
	}
}
