package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus/bustest"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

// Finished jobs are announced with JobFinished; a failed job or one that
// grew the files saved nothing. The status lists the pool with the total
// its state keeps (none here: no job of its ran).
func TestDaemonStatusCountsFinishedJobs(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pools := pool.NewRegistry(log, nil)
	t.Cleanup(func() { pools.Close() })
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "appvms"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := pools.Open("vdo", dir); err != nil {
		t.Fatal(err)
	}
	status := newDaemonStatus(pools, log)
	status.jobs = pool.NewScheduler(pool.SchedulerConfig{}, log, nil)

	b := bustest.Start(t)
	status.export(b.Conn(t), "1.2.3")
	listener := b.Conn(t)
	if err := listener.AddMatchSignal(dbus.WithMatchInterface(bus.Interface)); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 8)
	listener.Signal(signals)

	jobs := []struct {
		done  pool.JobDone
		saved uint64
	}{
		{pool.JobDone{Dir: dir, VID: "appvms/a/private", Result: pool.Result{DiskBefore: 100, DiskAfter: 40}}, 60},
		{pool.JobDone{Dir: dir, VID: "appvms/b/private", Result: pool.Result{DiskBefore: 10, DiskAfter: 20}}, 0},
		{pool.JobDone{Dir: dir, VID: "appvms/c/private", Result: pool.Result{DiskBefore: 10}, Err: errors.New("failed")}, 0},
	}
	for _, j := range jobs {
		status.jobDone(j.done)
		select {
		case sig := <-signals:
			if sig.Name != bus.Interface+".JobFinished" || sig.Body[0] != j.done.VID || sig.Body[1] != j.saved {
				t.Errorf("signal %s %v, want JobFinished(%s, %d)", sig.Name, sig.Body, j.done.VID, j.saved)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no JobFinished for %s", j.done.VID)
		}
	}
	st := status.Status()
	if len(st.Pools) != 1 || st.Pools[0].BytesSaved != 0 || st.Pools[0].DirPath != dir || st.JobsQueued+st.JobsRunning != 0 {
		t.Errorf("status %+v, want one pool with nothing saved and no jobs", st)
	}
}
