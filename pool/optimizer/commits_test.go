// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"bytes"
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

// A job commits at its end only when it changed an extent: one that had
// nothing to do (data that neither compresses nor repeats)
// settles on its plan's commit, so that VMs stopped together with little
// to do share one commit. The examined mark stays exact: the job after a
// settle without a commit hashes what the VM wrote, and a full pass after
// the job finds the data examined.
func TestJobCommitsAtItsEndOnlyWhenItChangedExtents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    func(n int) []byte
		commits int64 // the plan's, and the settle's if any
	}{
		{"data written twice", func(n int) []byte { return bytes.Repeat(noise(6, n/2), 2) }, 2},
		{"unique random data", func(n int) []byte { return noise(7, n) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			vid := "appvms/a/private"
			s := spec(vid)
			h.Must(h.P.Volumes.Create(s))
			h.fullPass(vid) // so that the volume's examined data is marked from here on
			h.Jobs.Pause("test")
			h.Must(h.P.Volumes.Start(s))
			btrfstest.WriteAt(t, h.Path(vid+"-dirty.img"), 0, tc.data(8*mib))
			h.Must(h.P.Volumes.Stop(s))
			sum := btrfstest.Digest(t, h.Path(vid+".img"))
			time.Sleep(100 * time.Millisecond) // beyond the file times' slack: the plan commits once
			h.Jobs.Resume("test")
			h.Wait()
			c := h.lastDone(vid).Counters
			// The full pass before settled without a commit, on a mark
			// that must not cover what the VM wrote since.
			if got := c.Get(optimizer.CountDedupBytesHashed); got != 8*mib {
				t.Errorf("the job hashed %d bytes, want the %d the VM wrote", got, 8*mib)
			}
			if got := c.Get(optimizer.CountJobCommits); got != tc.commits {
				t.Errorf("the job made %d commits, want %d", got, tc.commits)
			}
			if got := h.fullPass(vid).Counters.Get(optimizer.CountDedupBytesHashed); got != 0 {
				t.Errorf("a full pass after the job hashed %d bytes again, want 0", got)
			}
			if btrfstest.Digest(t, h.Path(vid+".img")) != sum {
				t.Error("the image changed content")
			}
		})
	}
}
