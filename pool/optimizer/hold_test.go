// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// A job is queued only for what a job can work on: not for a running
// volume (its commit queues one), nor for one without committed data (a
// volatile or snapshot volume, whose job would wait for a commit that
// never comes).
func TestNoJobForRunningOrUncommittedVolumes(t *testing.T) {
	h := newOptHarness(t)
	origin, volatile := spec("appvms/work/private"), volume.Spec{VID: "appvms/work/volatile", RW: true, Size: 8 * mib}
	snapshot := volume.Spec{VID: "appvms/work/root", RW: true, SnapOnStart: true, Source: "vm-templates/fedora/root", Size: 8 * mib}
	template := spec("vm-templates/fedora/root")
	for _, s := range []volume.Spec{origin, volatile, snapshot, template} {
		h.Must(h.P.Volumes.Create(s))
	}
	h.CommitText(template, mib)
	h.Wait()
	h.Jobs.Pause("test")
	for _, s := range []volume.Spec{origin, volatile, snapshot} {
		h.Must(h.P.Volumes.Start(s))
	}
	if jobs := h.Jobs.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs before optimize: %+v", jobs)
	}
	vols, err := h.Pools.Resolve("work")
	if err != nil || len(vols) != 3 {
		t.Fatalf("Resolve(work) = %d volumes, %v", len(vols), err)
	}
	for _, v := range vols {
		if _, err := v.Pool.Optimizer.Optimize(v.VID, true); !errors.Is(err, optimizer.ErrNotOptimizable) {
			t.Errorf("Optimize(%s) = %v, want ErrNotOptimizable", v.VID, err)
		}
	}
	for _, s := range []volume.Spec{origin, volatile, snapshot} {
		h.Must(h.P.Volumes.Stop(s))
	}
	if _, err := h.P.Optimizer.Optimize(volatile.VID, false); !errors.Is(err, optimizer.ErrNotOptimizable) {
		t.Errorf("Optimize(stopped volatile) = %v, want ErrNotOptimizable", err)
	}
	h.Jobs.Resume("test")
	h.Wait()
	if jobs := h.Jobs.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs left: %+v", jobs)
	}
}

// A volume with snapshots disabled holds its job while it runs; the job
// runs after the volume stops, instead of waiting for a commit forever,
// and the stop's new data is optimized.
func TestHeldJobOfVolumeWithoutSnapshotsRunsAfterStop(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/work/private")
	s.RevisionsToKeep = -1
	h.Must(h.P.Volumes.Create(s))
	h.CommitText(s, 16*mib)
	h.Wait()
	h.Jobs.Pause("test")
	if _, err := h.P.Optimizer.Optimize(s.VID, true); err != nil {
		t.Fatal(err)
	}
	h.Must(h.P.Volumes.Start(s))
	if jobs := h.Jobs.Jobs(); len(jobs) != 1 || jobs[0].State != api.JobHeld {
		t.Fatalf("jobs while the volume runs: %+v", jobs)
	}
	h.Must(h.P.Volumes.Stop(s))
	h.Jobs.Resume("test")
	h.Wait()
	if jobs := h.Jobs.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs lingering after the stop: %+v", jobs)
	}
	if z := zstdBytes(measure(t, h.Path(s.VID+".img"))); z < 15*mib {
		t.Errorf("the held job did not run: %d bytes zstd", z)
	}
}

// An optimize of many volumes writes the pool's state a few times, not
// once per job; a commit's job is on disk before the commit returns.
func TestQueuedJobsCoalesceStateWrites(t *testing.T) {
	h := newOptHarness(t)
	h.Jobs.Pause("test")
	const volumes = 300
	for i := range volumes {
		s := spec(fmt.Sprintf("appvms/vm%d/private", i))
		h.Must(h.P.Volumes.Create(s))
	}
	before := optimizer.StateWrites(h.P.Optimizer)
	vols, err := h.Pools.Resolve("")
	if err != nil || len(vols) != volumes {
		t.Fatalf("Resolve = %d volumes, %v", len(vols), err)
	}
	for _, v := range vols {
		if _, err := v.Pool.Optimizer.Optimize(v.VID, true); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // the last batch is written
	if n := optimizer.StateWrites(h.P.Optimizer) - before; n == 0 || n > volumes/10 {
		t.Errorf("%d state writes for %d queued jobs", n, volumes)
	}
	data, err := os.ReadFile(filepath.Join(h.Dir, volume.StateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Jobs []optimizer.Job }
	if err := json.Unmarshal(data, &st); err != nil || len(st.Jobs) != volumes {
		t.Fatalf("state.json holds %d jobs, %v", len(st.Jobs), err)
	}

	s := spec("appvms/vm0/private")
	before = optimizer.StateWrites(h.P.Optimizer)
	h.CommitText(s, mib)
	if optimizer.StateWrites(h.P.Optimizer) == before {
		t.Error("the commit returned before its job was written")
	}
}
