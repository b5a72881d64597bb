package pool_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestUnsavedJobIsNotListed: a commit's job whose state cannot be
// written (a full disk, say) is refused, and no queued job is left behind
// that a crash would lose and that btrfs-vdo jobs --wait would wait for;
// the commit makes the precache itself.
func TestUnsavedJobIsNotListed(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := pool.NewRegistry(log, nil)
	sched := pool.NewScheduler(pool.SchedulerConfig{}, log, nil)
	reg.SetScheduler(sched)
	p, err := reg.Open("p", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	s := volume.Spec{VID: "appvms/work/private", RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 1 << 20}
	for _, op := range []func(volume.Spec) (volume.State, error){p.Volumes.Create, p.Volumes.Start} {
		if _, err := op(s); err != nil {
			t.Fatal(err)
		}
	}
	// The state's temp file cannot be created where a directory stands.
	if err := os.Mkdir(filepath.Join(dir, pool.StateDir, "state.json~"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Volumes.Stop(s); err != nil {
		t.Fatal(err)
	}
	if jobs := sched.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs listed after a commit whose job was not saved: %+v", jobs)
	}
	if _, err := os.Stat(filepath.Join(dir, "appvms/work/private-precache.img")); err != nil {
		t.Fatalf("the commit left the precache to a job that was not saved: %v", err)
	}
}
