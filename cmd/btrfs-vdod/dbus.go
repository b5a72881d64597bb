package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

// connectBus connects to the system bus, at $DBUS_SYSTEM_BUS_ADDRESS or the
// standard socket. The bus is optional: without it the daemon serves qubesd
// all the same, with no shutdown inhibitor, battery watch or status object.
func connectBus(log *slog.Logger) *dbus.Conn {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		log.Info("no D-Bus system bus: running without shutdown inhibitor, battery watch and status object", "err", err)
		return nil
	}
	return conn
}

// watchBattery pauses the jobs while the machine is on battery.
func watchBattery(ctx context.Context, conn *dbus.Conn, log *slog.Logger, jobs bus.Pauser) {
	if err := bus.WatchBattery(ctx, conn, log, jobs); err != nil {
		log.Warn("not watching the battery", "err", err)
	}
}

// daemonStatus is what the daemon publishes on D-Bus: its pools, the
// scheduler's jobs, and the bytes each pool's jobs saved.
type daemonStatus struct {
	pools *pool.Registry
	jobs  *pool.Scheduler
	log   *slog.Logger

	mu  sync.Mutex
	svc *bus.Service // nil until exported
}

func newDaemonStatus(pools *pool.Registry, log *slog.Logger) *daemonStatus {
	return &daemonStatus{pools: pools, log: log}
}

// export publishes the status on the bus; a failure costs only the status
// object.
func (d *daemonStatus) export(conn *dbus.Conn, version string) {
	svc, err := bus.Export(conn, version, d)
	if err != nil {
		d.log.Warn("no status on D-Bus", "err", err)
		return
	}
	d.mu.Lock()
	d.svc = svc
	d.mu.Unlock()
	d.log.Debug("status published on D-Bus", "name", bus.Name)
}

// jobDone is the scheduler's report of a finished job: it has the totals
// saved and announces the job on the bus. A failed job saved nothing.
func (d *daemonStatus) jobDone(j pool.JobDone) {
	d.pools.JobDone(j)
	var saved uint64
	if j.Err == nil {
		saved = uint64(max(j.Result.Saved(), 0))
	}
	d.mu.Lock()
	svc := d.svc
	d.mu.Unlock()
	if svc != nil {
		if err := svc.JobFinished(j.VID, saved); err != nil {
			d.log.Debug("cannot announce finished job", "vid", j.VID, "err", err)
		}
	}
}

// Status reports the open pools, ordered by directory, and the jobs.
func (d *daemonStatus) Status() bus.Status {
	var st bus.Status
	for _, p := range d.pools.List() {
		st.Pools = append(st.Pools, bus.PoolStatus{Name: p.Name, DirPath: p.Volumes.Dir(), Commits: p.Commits(), BytesSaved: p.Saved()})
	}
	slices.SortFunc(st.Pools, func(a, b bus.PoolStatus) int { return strings.Compare(a.DirPath, b.DirPath) })
	for _, j := range d.jobs.Jobs() {
		if j.State == "running" {
			st.JobsRunning++
		} else {
			st.JobsQueued++
		}
	}
	return st
}
