package pool_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

// TestUnsavedJobIsNotListed: a job whose state cannot be written (a full
// disk, say) is refused, and no queued job is left behind that nothing
// would run and that btrfs-vdo jobs --wait would wait for forever.
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
	// The state's temp file cannot be created where a directory that is
	// not empty stands.
	if err := os.MkdirAll(filepath.Join(dir, pool.StateDir, "state.json~", "full"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := p.Optimise("appvms/work/private", false); err == nil {
		t.Fatal("Optimise succeeded without saving its job")
	}
	if jobs := sched.Jobs(); len(jobs) != 0 {
		t.Fatalf("jobs listed after a failed Optimise: %+v", jobs)
	}
}
