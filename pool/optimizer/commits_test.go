// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// Volumes that stop together share the jobs' transaction commits: each
// plan takes the commit the job before it made at its end, so that every
// job but the first makes one commit, and the data is optimized all the
// same.
func TestJobsOfVolumesStoppedTogetherShareCommits(t *testing.T) {
	h := newOptHarness(t)
	h.Jobs.Pause("test")
	vids := []string{"appvms/a/private", "appvms/b/private", "appvms/c/private"}
	sums := map[string][32]byte{}
	for _, vid := range vids {
		s := spec(vid)
		h.Must(h.P.Volumes.Create(s))
		h.CommitText(s, 8*mib)
		sums[vid] = btrfstest.Digest(t, h.Path(vid+".img"))
	}
	time.Sleep(100 * time.Millisecond) // beyond the file times' slack: the commits come after every change
	h.Jobs.Resume("test")
	h.Wait()
	c := h.Jobs.Counters()
	if n := c.Get(optimizer.CountJobDone); n != int64(len(vids)) {
		t.Fatalf("%d jobs done, want %d", n, len(vids))
	}
	// The first job's plan commits, and every job commits at its end.
	if got, want := c.Get(optimizer.CountJobCommits), int64(1+len(vids)); got != want {
		t.Errorf("%d commits for %d jobs, want %d", got, len(vids), want)
	}
	for _, vid := range vids {
		if btrfstest.Digest(t, h.Path(vid+".img")) != sums[vid] {
			t.Fatalf("%s changed content", vid)
		}
		if z := zstdBytes(measure(t, h.Path(vid+".img"))); z < 7*mib {
			t.Errorf("%s: %d bytes zstd, want its new data compressed", vid, z)
		}
	}
}
