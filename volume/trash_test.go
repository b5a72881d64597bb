// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// A commit's pruned revision leaves the listing at once and is deleted
// after the commit returned, leaving the kept revision and the image
// whole; what a crash left in the trash is deleted when the store opens.
func TestPrunedRevisionsAreDeletedAfterTheCommit(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	var sums []string
	for i := range 3 {
		h.must(h.store.Start(spec))
		h.write("appvms/work/private-dirty.img", int64(i)*mib, pattern(byte(i+1), mib))
		sums = append(sums, h.sum("appvms/work/private-dirty.img"))
		h.must(h.store.Stop(spec))
	}
	st := h.must(h.store.Info(spec))
	if len(st.Revisions) != 1 || st.Revisions[0].ID != "3" {
		t.Fatalf("revisions after three commits: %+v, want revision 3 only", st.Revisions)
	}
	if err := h.store.Close(); err != nil { // waits for the trash
		t.Fatal(err)
	}
	trash := h.path(filepath.Join(volume.StateDir, "trash"))
	if left, err := os.ReadDir(trash); err != nil || len(left) != 0 {
		t.Errorf("trash after the store closed: %v, %v; want empty", left, err)
	}
	if h.sum("appvms/work/private.img") != sums[2] || h.sum(h.revisionFile("appvms/work/private", st.Revisions[0])) != sums[1] {
		t.Error("the image or the kept revision lost its content")
	}

	leftover := filepath.Join(trash, "1-1")
	if err := os.WriteFile(leftover, pattern(7, mib), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := volume.Open(h.dir, logtest.Discard(), volume.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(leftover); !os.IsNotExist(err) {
		t.Errorf("a file left in the trash outlived the store's open: %v", err)
	}
}

// WaitPruned(vid) returns only once the revision vid's commit pruned is
// deleted, here with another volume's pruned just before it.
func TestWaitPrunedWaitsForTheVolumesPrunedRevision(t *testing.T) {
	h := newHarness(t)
	specs := []volume.Spec{origin("appvms/mail/private", 1), origin("appvms/work/private", 1)}
	for _, spec := range specs {
		h.must(h.store.Create(spec))
		h.must(h.store.Start(spec))
		h.write(spec.VID+"-dirty.img", 0, pattern(1, mib))
		h.must(h.store.Stop(spec))
	}
	work := specs[1]
	revs := h.must(h.store.Info(work)).Revisions
	if len(revs) != 1 {
		t.Fatalf("revisions after one commit: %+v, want one", revs)
	}
	pruned := h.inode(h.revisionFile(work.VID, revs[0]))
	for _, spec := range specs {
		h.must(h.store.Start(spec))
		h.write(spec.VID+"-dirty.img", mib, pattern(2, mib))
		h.must(h.store.Stop(spec))
	}
	if revs := h.must(h.store.Info(work)).Revisions; len(revs) != 1 || revs[0].ID != "2" {
		t.Fatalf("revisions after two commits: %+v, want revision 2 only", revs)
	}
	h.store.WaitPruned(work.VID)
	trash := h.path(filepath.Join(volume.StateDir, "trash"))
	left, err := os.ReadDir(trash)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if h.inode(filepath.Join(volume.StateDir, "trash", e.Name())) == pruned {
			t.Fatalf("%s's pruned revision is still in the trash after WaitPruned", work.VID)
		}
	}
}

// inode is the inode number of the pool's file name, 0 if there is none.
func (h *harness) inode(name string) uint64 {
	h.t.Helper()
	info, err := os.Lstat(h.path(name))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}
