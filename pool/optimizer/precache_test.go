// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"os"
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// The commit makes the precache before its job runs, so that a start
// while the job works is a rename, not a clone that waits for the job's
// writes. The job rewrites the precache along with the image: afterwards
// both reference the same compressed extents, and the precache pins none
// of the commit's uncompressed ones.
func TestCommitPrecacheIsReadyAndSharesTheJobsExtents(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/work/private")
	img, pre, dirty := h.Path(s.VID+".img"), h.Path(s.VID+"-precache.img"), h.Path(s.VID+"-dirty.img")
	h.Must(h.P.Volumes.Create(s))
	h.Jobs.Pause("test")
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, dirty, 0, btrfstest.Text("commit", 24*mib))
	want := btrfstest.Digest(t, dirty)
	h.Must(h.P.Volumes.Stop(s))

	made, err := os.Stat(pre)
	if err != nil {
		t.Fatalf("no precache as the commit returns, its job queued: %v", err)
	}
	if btrfstest.Digest(t, pre) != want {
		t.Fatal("the commit's precache differs from the committed data")
	}
	h.Jobs.Resume("test")
	h.Wait()

	kept, err := os.Stat(pre)
	if err != nil || !os.SameFile(made, kept) {
		t.Fatalf("the job replaced the commit's precache: %v", err)
	}
	for _, path := range []string{img, pre} {
		if btrfstest.Digest(t, path) != want {
			t.Fatalf("%s differs from the committed data after the job", path)
		}
	}
	imgExts, preExts := dataExtents(t, img), dataExtents(t, pre)
	if !slices.Equal(imgExts, preExts) {
		t.Fatalf("image and precache no longer share every extent: %d and %d extents", len(imgExts), len(preExts))
	}
	if z := zstdBytes(measure(t, img, pre)); z < 23*mib {
		t.Errorf("the job left the shared data uncompressed: %d bytes zstd", z)
	}

	h.Must(h.P.Volumes.Start(s))
	started, err := os.Stat(dirty)
	if err != nil || !os.SameFile(made, started) {
		t.Fatalf("the start did not take the precache: %v", err)
	}
	if btrfstest.Digest(t, dirty) != want {
		t.Fatal("the VM would not see the committed data")
	}
}

// A start while the commit's job runs hands the VM exactly the committed
// data, whichever chunk the job was at; the job, held, resumes at the
// next commit and leaves the data intact.
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

// dataExtents lists path's file ranges and the data extents they
// reference, holes left out.
func dataExtents(t *testing.T, path string) []btrfs.Extent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := btrfs.Extents(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []btrfs.Extent
	for _, e := range all {
		if !e.IsHole() {
			out = append(out, btrfs.Extent{Offset: e.Offset, Length: e.Length, DiskBytenr: e.DiskBytenr, ExtentOffset: e.ExtentOffset})
		}
	}
	return out
}
