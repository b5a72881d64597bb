// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
)

// A request merged into a job not yet running is covered by that job's
// run and gets its id; one merged into a running job runs after it, under
// an id of its own.
func TestPutJobIDs(t *testing.T) {
	tests := []struct {
		name    string
		pending []Job
		running bool
		wantID  uint64
	}{
		{"no pending job", nil, false, 9},
		{"pending job queued", []Job{{ID: 4, VID: "appvms/a/private"}}, false, 4},
		{"pending job running", []Job{{ID: 4, VID: "appvms/a/private"}}, true, 9},
		{"pending job from before ids", []Job{{VID: "appvms/a/private"}}, false, 9},
		{"other volume's job", []Job{{ID: 4, VID: "appvms/b/private"}}, false, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, id := putJob(append([]Job{}, tt.pending...), Job{ID: 9, VID: "appvms/a/private", Full: true}, tt.running)
			if id != tt.wantID {
				t.Fatalf("id %d, want %d", id, tt.wantID)
			}
			found := false
			for _, j := range jobs {
				if j.VID == "appvms/a/private" {
					found = found || (j.ID == id && j.Full)
				}
			}
			if !found {
				t.Fatalf("no merged job with id %d in %+v", id, jobs)
			}
		})
	}
}

// Ids handed out after a restart stay above those of the jobs a pool left.
func TestResumeKeepsIDsUnique(t *testing.T) {
	s := NewScheduler(SchedulerConfig{}, logtest.Discard(), nil)
	p, err := OpenTestPool(t, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.lastID = 2
	s.mu.Unlock()
	s.resume(p, []Job{{ID: 7, VID: "appvms/a/private", Held: true}})
	if s.lastID != 7 {
		t.Fatalf("lastID %d after resuming a job with id 7", s.lastID)
	}
}
