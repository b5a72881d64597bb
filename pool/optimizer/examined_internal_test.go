// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// A commit no job follows, because the daemon runs no optimizer, leaves
// the volume's examined mark to a full pass as a commit whose job could
// not be queued does; an import drops it, since the data it reflinked
// may be older than the mark.
func TestCommitWithoutOptimizerStopsExaminedMark(t *testing.T) {
	const vid = "appvms/work/private"
	for _, tc := range []struct {
		name     string
		imported bool
		want     map[string]examinedMark
	}{
		{"commit", false, map[string]examinedMark{vid: {Gen: 7}}},
		{"import", true, map[string]examinedMark{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := openTestPool(t)
			p.state.updateSoon(func(s *state) { s.Examined[vid] = examinedMark{Gen: 7, Inode: 300, Next: 301} })
			if p.committed(volume.Committed{VID: vid, Imported: tc.imported}) {
				t.Fatal("a pool without optimizer left the precache to a job")
			}
			if got := p.state.read().Examined; len(got) != len(tc.want) || got[vid] != tc.want[vid] {
				t.Errorf("examined marks %+v, want %+v", got, tc.want)
			}
		})
	}
}
