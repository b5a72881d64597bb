// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Work under a volume's lock is reported to Hooks.Writing, which holds
// off a shutdown, unless it changes no file.
func TestLockedWorkIsReportedAsWritingUnlessReadOnly(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	tests := []struct {
		name   string
		locked func(fn func(*volume.Locked) error) error
		want   []string
	}{
		{"Locked", func(fn func(*volume.Locked) error) error { return h.store.Locked(spec.VID, "optimize", fn) },
			[]string{"optimize " + spec.VID}},
		{"ReadLocked", func(fn func(*volume.Locked) error) error { return h.store.ReadLocked(spec.VID, fn) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.mu.Lock()
			h.writes = nil
			h.mu.Unlock()
			writing := -1
			err := tt.locked(func(l *volume.Locked) error {
				h.mu.Lock()
				writing = h.writing
				h.mu.Unlock()
				_, err := l.Running()
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if wantWriting := len(tt.want); writing != wantWriting || !slices.Equal(h.writes, tt.want) {
				t.Errorf("%d writing during the work, %q after; want %d, %q", writing, h.writes, wantWriting, tt.want)
			}
		})
	}
}
