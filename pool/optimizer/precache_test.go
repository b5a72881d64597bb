// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// A start while the commit's job runs hands the VM exactly the committed
// data, whichever step the job was at (the precache not made yet, the
// start then clones the image); the job, held, resumes at the next commit
// and leaves the data intact.
func TestStartDuringJobSeesCommittedData(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/work/private")
	dirty := h.Path(s.VID + "-dirty.img")
	h.Must(h.P.Volumes.Create(s))
	for i, seed := range []string{"first", "second", "third"} {
		h.Must(h.P.Volumes.Start(s))
		btrfstest.WriteAt(t, dirty, int64(i)*4*mib, btrfstest.Text(seed, 16*mib))
		want := btrfstest.Digest(t, dirty)
		h.Must(h.P.Volumes.Stop(s))
		h.Must(h.P.Volumes.Start(s)) // the job has just begun, if at all
		if btrfstest.Digest(t, dirty) != want {
			t.Fatalf("commit %d: the start during its job does not see the committed data", i+1)
		}
		h.Must(h.P.Volumes.Stop(s))
	}
	h.Wait()
	want := btrfstest.Digest(t, h.Path(s.VID+".img"))
	if btrfstest.Digest(t, h.Path(s.VID+"-precache.img")) != want {
		t.Fatal("the precache differs from the image after the jobs")
	}
}
