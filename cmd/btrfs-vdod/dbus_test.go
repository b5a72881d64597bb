// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus/bustest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
)

// Finished jobs are announced with JobFinished; a failed job or one that
// grew the files saved nothing. The status lists the pool with the total
// its usage file keeps (none here: no job of its ran).
func TestDaemonStatusCountsFinishedJobs(t *testing.T) {
	d := pooltest.Start(t, pooltest.Options{Optimizer: &optimizer.SchedulerConfig{}})
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "appvms"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pools.Open("vdo", dir); err != nil {
		t.Fatal(err)
	}
	status := daemonStatus{pools: d.Pools, jobs: d.Jobs}
	announcer := &busAnnouncer{log: logtest.Discard()}

	b := bustest.Start(t)
	announcer.export(b.Conn(t), "1.2.3", status)
	listener := b.Conn(t)
	if err := listener.AddMatchSignal(dbus.WithMatchInterface(bus.Interface)); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 8)
	listener.Signal(signals)

	jobs := []struct {
		done  optimizer.JobDone
		saved uint64
	}{
		{optimizer.JobDone{Dir: dir, VID: "appvms/a/private", Result: optimizer.Result{DiskBefore: 100, DiskAfter: 40}}, 60},
		{optimizer.JobDone{Dir: dir, VID: "appvms/b/private", Result: optimizer.Result{DiskBefore: 10, DiskAfter: 20}}, 0},
		{optimizer.JobDone{Dir: dir, VID: "appvms/c/private", Result: optimizer.Result{DiskBefore: 10}, Err: errors.New("failed")}, 0},
	}
	for _, j := range jobs {
		announcer.jobDone(j.done)
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

// commitText starts the volume, writes compressible text into its dirty
// image as a VM would, and stops it: a commit, and a job after it.
func commitText(t *testing.T, d *vdod, args api.VolumeArgs, seed string) {
	t.Helper()
	d.call(t, api.OpVolumeStart, args, nil)
	dirty := filepath.Join(args.Pool.DirPath, args.Volume.VID+"-dirty.img")
	f, err := os.OpenFile(dirty, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(seed + ": the quick brown fox jumps over the lazy dog\n")
	if _, err := f.Write(bytes.Repeat(line, (16<<20)/len(line))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d.call(t, api.OpVolumeStop, args, nil)
}

// stampedSignal is a signal with the time it arrived.
type stampedSignal struct {
	*dbus.Signal
	at time.Time
}

// waitBytesSaved waits for a PropertiesChanged that reports bytes saved.
// How often signals come is internal/bus's test's business: gaps measured
// here, after the bus delivered them, also hold the bus's jitter.
func waitBytesSaved(t *testing.T, signals chan stampedSignal) uint64 {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for n := 0; ; n++ {
		select {
		case sig := <-signals:
			changed, _ := sig.Body[1].(map[string]dbus.Variant)
			if saved, ok := changed["BytesSaved"].Value().(uint64); ok && saved > 0 {
				return saved
			}
		case <-timeout:
			t.Fatalf("no PropertiesChanged with BytesSaved after %d signals", n)
		}
	}
}

// subscribe receives the daemon's PropertiesChanged on conn, stamped as
// they arrive.
func subscribe(t *testing.T, conn *dbus.Conn) chan stampedSignal {
	t.Helper()
	if err := conn.AddMatchSignal(dbus.WithMatchSender(bus.Name), dbus.WithMatchObjectPath(bus.Path),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	raw := make(chan *dbus.Signal, 64)
	conn.Signal(raw)
	stamped := make(chan stampedSignal, 64)
	go func() {
		for sig := range raw {
			stamped <- stampedSignal{sig, time.Now()}
		}
	}()
	return stamped
}

// waitOwned waits until the daemon owns its name on the bus b, and
// returns how long that took.
func waitOwned(t *testing.T, b *bustest.Bus, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	conn := b.Conn(t)
	for {
		var owned bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, bus.Name).Store(&owned)
		if err == nil && owned {
			return time.Since(began)
		}
		if time.Since(began) > within {
			t.Fatalf("%s not owned on the bus after %s (%v)", bus.Name, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The real daemon on a real bus: a widget subscribed to PropertiesChanged
// learns of a job's saved bytes without polling, and when the bus
// restarts the daemon is back on the new bus, signals included.
func TestDBusPropertiesChangedAcrossBusRestart(t *testing.T) {
	dir := filepath.Join(btrfstest.Mount(t, 1<<30), "pool")
	b := bustest.Start(t)
	address, _, _ := strings.Cut(b.Address, ",guid=") // the restarted bus has another guid
	d := startDaemon(t, daemonOpts{env: []string{"DBUS_SYSTEM_BUS_ADDRESS=" + address}})
	pl := api.Pool{Name: "vdo", DirPath: dir}
	d.call(t, api.OpPoolSetup, api.PoolSetupArgs{Pool: pl, SetupCheck: true}, nil)
	waitOwned(t, b, 10*time.Second)
	signals := subscribe(t, b.Conn(t))
	args := api.VolumeArgs{Pool: pl, Volume: api.Volume{VID: "appvms/work/private", RW: true, SaveOnStop: true,
		RevisionsToKeep: 1, Size: 64 << 20}}
	d.call(t, api.OpVolumeCreate, args, nil)
	commitText(t, d, args, "first")
	saved := waitBytesSaved(t, signals)
	t.Logf("BytesSaved %d announced", saved)

	b.Restart(t)
	took := waitOwned(t, b, 15*time.Second)
	t.Logf("back on the restarted bus after %s", took)
	d.waitLog(t, "connected to the D-Bus system bus")
	out, err := exec.Command("busctl", "--address="+b.Address, "get-property",
		bus.Name, string(bus.Path), bus.Interface, "Commits").CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "t 1" {
		t.Errorf("Commits on the new bus: %q, %v", got, err)
	}
	signals = subscribe(t, b.Conn(t))
	commitText(t, d, args, "second")
	if more := waitBytesSaved(t, signals); more <= saved {
		t.Errorf("BytesSaved %d after a second job, %d before", more, saved)
	}
}
