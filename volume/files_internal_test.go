// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"golang.org/x/sys/unix"
)

// A commit or a revert drops the revision it saved only when its rename
// did not take place: once it did, that revision is the only name left of
// the state before, even when the directory could not be synced after.
func TestRenamedTellsWhetherTheRenameTookPlace(t *testing.T) {
	syncFailed := dirSyncError{fmt.Errorf("fsync directory appvms/work: %w", unix.EIO)}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, true},
		{"directory sync failed after the rename", syncFailed, true},
		{"wrapped by a caller", fmt.Errorf("precache: %w", syncFailed), true},
		{"rename failed", &fs.PathError{Op: "rename", Path: "appvms/work/private.img", Err: unix.ENOSPC}, false},
		{"other failure", errors.New("stat: no such file"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renamed(tt.err); got != tt.want {
				t.Errorf("renamed(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if !errors.Is(syncFailed, unix.EIO) {
		t.Error("the sync failure's errno is lost")
	}
}
