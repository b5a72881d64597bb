// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Commits that come while a job is being written go to disk together:
// of twenty durable puts, the first is held at the state's lock while
// the others queue, and the twenty take two writes of the state. Each
// put returns once its job is on disk, or, when the write fails, with the
// error, its batch undone whole and nothing queued.
func TestDurablePutsShareWrites(t *testing.T) {
	const puts = 20
	for _, tc := range []struct {
		name      string
		writeFail bool
	}{
		{name: "written"},
		{name: "write fails", writeFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sched := NewScheduler(SchedulerConfig{}, logtest.Discard(), nil) // not run: jobs stay queued
			p, err := OpenTestPool(t, sched, dir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.writeFail {
				// No temp file can be made where a directory that is not
				// empty stands.
				blocker := filepath.Join(dir, volume.StateDir, stateFile+"~")
				if err := os.MkdirAll(filepath.Join(blocker, "full"), 0o700); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(blocker) }) // before the pool closes
			}
			ids := make([]uint64, puts)
			errs := make([]error, puts)
			var wg sync.WaitGroup
			put := func(i int) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ids[i], errs[i] = sched.putDurable(p, Job{VID: fmt.Sprintf("appvms/vm%d/private", i)}, nil)
				}()
			}
			writes := p.state.lazy.writes.Load()
			p.state.mu.Lock()
			put(0)
			waitFor(t, "the first put's batch to be taken", func(b *durablePuts) bool { return b.writing && len(b.queue) == 0 }, &sched.durable)
			for i := 1; i < puts; i++ {
				put(i)
			}
			waitFor(t, "the other puts to queue", func(b *durablePuts) bool { return len(b.queue) == puts-1 }, &sched.durable)
			p.state.mu.Unlock()
			wg.Wait()

			if n := p.state.lazy.writes.Load() - writes; n != 2 {
				t.Errorf("%d puts took %d writes of the state, want 2", puts, n)
			}
			onDisk, err := readState(p.state.dir)
			if err != nil && !tc.writeFail {
				t.Fatal(err)
			}
			listed := len(p.state.read().Jobs)
			sched.mu.Lock()
			queued := len(sched.queue)
			sched.mu.Unlock()
			for i := range puts {
				if tc.writeFail != (errs[i] != nil) || tc.writeFail != (ids[i] == 0) {
					t.Errorf("put %d: id %d, error %v", i, ids[i], errs[i])
				}
			}
			want := puts
			if tc.writeFail {
				want = 0
			}
			if listed != want || queued != want || (!tc.writeFail && len(onDisk.Jobs) != want) {
				t.Errorf("jobs listed %d, queued %d, on disk %d; want %d", listed, queued, len(onDisk.Jobs), want)
			}
		})
	}
}

// waitFor polls cond on b, under its lock, until it holds.
func waitFor(t *testing.T, what string, cond func(*durablePuts) bool, b *durablePuts) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		ok := cond(b)
		b.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
