// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"os"
	"path/filepath"
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
