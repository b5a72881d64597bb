// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// Reconnection to the system bus backs off from busRetryMin to
// busRetryMax: a restarted bus is back within a second, and a machine
// without one is tried again now and then at the cost of a failed
// connect.
const (
	busRetryMin = 200 * time.Millisecond
	busRetryMax = 30 * time.Second
)

// connectBus connects to the system bus, at $DBUS_SYSTEM_BUS_ADDRESS or the
// standard socket. The bus is optional: without it the daemon serves qubesd
// all the same, with no shutdown inhibitor, battery watch or status object,
// and keeps trying (busLink).
func connectBus(log *slog.Logger) *dbus.Conn {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		log.Info("no D-Bus system bus: running without shutdown inhibitor, battery watch and status object", "err", err)
		return nil
	}
	return conn
}

// busLink keeps the daemon on the system bus: when the connection drops
// (the bus restarted) it connects again, backing off, and takes up its
// name, its status object, the battery watch and, if an operation is
// writing, the shutdown inhibitor again.
type busLink struct {
	log       *slog.Logger
	version   string
	inhibitor *bus.Inhibitor
	announcer *busAnnouncer
	status    daemonStatus
	battery   bus.Pauser // nil: battery_policy = "run"
}

// busSession is the daemon's presence on one connection.
type busSession struct {
	conn  *dbus.Conn
	watch sync.WaitGroup // the battery watch
}

// join puts the daemon on the system bus, when there is one, and reports
// the jobs' changes there until the returned leave is called.
func (l *busLink) join(jobs *optimizer.Scheduler) (leave func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := l.start(ctx, connectBus(l.log))
	go l.announcer.watchJobs(ctx, jobs)
	return func() {
		cancel()
		done()
	}
}

// start takes up the daemon's place on conn (nil if there is no bus yet)
// before it returns, and keeps it on the bus until ctx is done. The
// returned function waits for that.
func (l *busLink) start(ctx context.Context, conn *dbus.Conn) (wait func()) {
	var s *busSession
	if conn != nil {
		s = l.attach(ctx, conn)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx, s)
	}()
	return func() { <-done }
}

// run waits for the session's connection to close and connects again,
// until ctx is done.
func (l *busLink) run(ctx context.Context, s *busSession) {
	delay := busRetryMin
	for {
		if s != nil {
			select {
			case <-ctx.Done():
			case <-s.conn.Context().Done():
			}
			l.detach(s)
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("lost the D-Bus system bus; connecting again")
			delay = busRetryMin
			s = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, busRetryMax)
		conn, err := dbus.ConnectSystemBus()
		if err != nil {
			l.log.Debug("D-Bus system bus still unreachable", "err", err, "retry", delay)
			continue
		}
		l.log.Info("connected to the D-Bus system bus")
		s = l.attach(ctx, conn)
	}
}

func (l *busLink) attach(ctx context.Context, conn *dbus.Conn) *busSession {
	s := &busSession{conn: conn}
	l.inhibitor.SetConn(conn)
	l.announcer.export(conn, l.version, l.status)
	if l.battery != nil {
		s.watch.Add(1)
		go func() {
			defer s.watch.Done()
			watchBattery(ctx, conn, l.log, l.battery)
		}()
	}
	return s
}

// detach closes the session's connection; a lock the inhibitor holds
// stays held.
func (l *busLink) detach(s *busSession) {
	l.inhibitor.SetConn(nil)
	s.conn.Close()
	s.watch.Wait()
}

// watchBattery pauses the jobs while the machine is on battery.
func watchBattery(ctx context.Context, conn *dbus.Conn, log *slog.Logger, jobs bus.Pauser) {
	err := bus.WatchBattery(ctx, conn, log, jobs)
	if err != nil && conn.Connected() {
		log.Warn("not watching the battery", "err", err)
	}
}

// daemonStatus is what the daemon publishes on D-Bus: its pools, the
// scheduler's jobs, and the bytes each pool's jobs saved.
type daemonStatus struct {
	pools *pool.Registry
	jobs  *optimizer.Scheduler
}

// Status reports the open pools, ordered by directory, and the jobs.
func (d daemonStatus) Status() bus.Status {
	var st bus.Status
	for _, p := range d.pools.List() {
		st.Pools = append(st.Pools, bus.PoolStatus{Name: p.Name, DirPath: p.Volumes.Dir(), Commits: p.Commits(), BytesSaved: p.Saved()})
	}
	slices.SortFunc(st.Pools, func(a, b bus.PoolStatus) int { return strings.Compare(a.DirPath, b.DirPath) })
	for _, j := range d.jobs.Jobs() {
		if j.State == api.JobRunning {
			st.JobsRunning++
		} else {
			st.JobsQueued++
		}
	}
	return st
}

// busAnnouncer sends the daemon's status changes and finished jobs to the
// status object, while one is exported.
type busAnnouncer struct {
	log *slog.Logger
	mu  sync.Mutex
	svc *bus.Service // nil until exported
}

// export publishes src on the bus; a failure costs only the status
// object.
func (a *busAnnouncer) export(conn *dbus.Conn, version string, src bus.StatusSource) {
	svc, err := bus.Export(conn, version, src)
	if err != nil {
		a.log.Warn("no status on D-Bus", "err", err)
	}
	a.mu.Lock()
	a.svc = svc // nil on failure: the last connection's object is gone
	a.mu.Unlock()
	if err == nil {
		a.log.Debug("status published on D-Bus", "name", bus.Name)
	}
}

func (a *busAnnouncer) service() *bus.Service {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.svc
}

// changed tells the status object that the status may have changed; it
// sends what did, coalesced.
func (a *busAnnouncer) changed() {
	if svc := a.service(); svc != nil {
		svc.Changed()
	}
}

// watchJobs reports every change of the jobs' states (queued, started,
// held, finished, paused) until ctx is done.
func (a *busAnnouncer) watchJobs(ctx context.Context, jobs *optimizer.Scheduler) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-jobs.Changed():
			a.changed()
		}
	}
}

// writing wraps the volume operations' hook: when a file-changing
// operation ends, a commit may have been counted or a pool opened.
func (a *busAnnouncer) writing(next func(op, vid string) (done func())) func(op, vid string) (done func()) {
	return func(op, vid string) func() {
		done := next(op, vid)
		return func() {
			done()
			a.changed()
		}
	}
}

// jobDone is the scheduler's report of a finished job: it announces the
// job on the bus with the bytes it saved. A failed job saved nothing.
func (a *busAnnouncer) jobDone(j optimizer.JobDone) {
	svc := a.service()
	if svc == nil {
		return
	}
	var saved uint64
	if j.Err == nil {
		saved = uint64(max(j.Result.Saved(), 0))
	}
	if err := svc.JobFinished(j.VID, saved); err != nil {
		a.log.Debug("cannot announce finished job", "vid", j.VID, "err", err)
	}
	svc.Changed()
}
