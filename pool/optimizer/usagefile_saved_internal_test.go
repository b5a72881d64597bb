// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// The saved bytes of jobs that left measuring to a later job reach the
// usage file with the next write, or as the pool closes if none came
// (the daemon stopped first): a restart counts on from them.
func TestSavedBytesLeftToALaterJobAreWritten(t *testing.T) {
	tests := []struct {
		name   string
		then   func(u *usageKeeper) // after two jobs left their saved bytes
		saved  int64
		closed bool // the file is read once the keeper closed
	}{
		{"by the job that measures", func(u *usageKeeper) { u.jobRan(5, false) }, 12, false},
		{"as the pool closes", func(*usageKeeper) {}, 7, true},
	}
	dir := btrfstest.Mount(t, 0)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := filepath.Join(dir, string(rune('a'+i)))
			if err := os.MkdirAll(filepath.Join(pool, volume.StateDir), 0o700); err != nil {
				t.Fatal(err)
			}
			u, err := openUsageKeeper(pool, logtest.Discard(), false)
			if err != nil {
				t.Fatal(err)
			}
			u.addSaved(3)
			u.addSaved(4)
			tt.then(u)
			if !tt.closed {
				if rec, err := readUsageFile(u.root); err != nil || rec.Saved != tt.saved {
					t.Errorf("before close: saved %d, %v; want %d", rec.Saved, err, tt.saved)
				}
			}
			if err := u.close(); err != nil {
				t.Fatal(err)
			}
			reopened, err := openUsageKeeper(pool, logtest.Discard(), false)
			if err != nil {
				t.Fatal(err)
			}
			defer reopened.close()
			if got := reopened.savedBytes(); got != tt.saved {
				t.Errorf("reopened: saved %d, want %d", got, tt.saved)
			}
		})
	}
}
