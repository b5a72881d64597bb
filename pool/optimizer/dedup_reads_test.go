// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// A deduplicated image must not reference short pieces of another
// image's compressed extents: each such piece costs a read of the whole
// extent. Runs covering a quarter of a source extent stay the image's own;
// runs covering whole extents are shared.
func TestDedupSharesNoShortPiecesOfCompressedExtents(t *testing.T) {
	const tpl, work = "vm-templates/debian/root", "appvms/work/private"
	const unit = btrfs.MaxCompressedExtent
	h := newOptHarness(t)
	for _, vid := range []string{tpl, work} {
		if err := os.MkdirAll(filepath.Dir(h.Path(vid)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := wordSalad(1, 32*unit)
	if err := os.WriteFile(h.Path(tpl+".img"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	h.fullPass(tpl)
	srcExtents := map[uint64]bool{}
	for _, e := range btrfstest.Extents(t, h.Path(tpl+".img")) {
		if e.Compression == btrfs.CompressNone {
			t.Fatalf("template extent %+v not compressed", e)
		}
		srcExtents[e.DiskBytenr] = true
	}
	// The first 16 units of the AppVM's image each hold a quarter of a
	// template unit and new text; the last 8 hold 8 whole template units.
	var img []byte
	for u := range 16 {
		img = append(img, src[u*unit:u*unit+unit/4]...)
		img = append(img, wordSalad(uint64(100+u), unit-unit/4)...)
	}
	img = append(img, src[16*unit:24*unit]...)
	if err := os.WriteFile(h.Path(work+".img"), img, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sums(t, h.poolFiles())
	r := h.fullPass(work)
	var sharedBytes uint64
	for _, e := range btrfstest.Extents(t, h.Path(work+".img")) {
		if !srcExtents[e.DiskBytenr] {
			continue
		}
		sharedBytes += e.Length
		if e.Length*2 < e.RAMBytes {
			t.Errorf("AppVM item %+v references %d of the template's %d-byte extent", e, e.Length, e.RAMBytes)
		}
	}
	t.Logf("shared %d bytes; dedup %+v", sharedBytes, r.Counters)
	if sharedBytes < 8*unit {
		t.Errorf("the AppVM shares %d bytes of the template, want the 8 whole units (%d)", sharedBytes, 8*unit)
	}
	for f, s := range want {
		if btrfstest.Digest(t, f) != s {
			t.Fatalf("%s changed", f)
		}
	}
}

// The rest of an image around shared runs is written to compressed
// extents of its own for each range between them: an extent holding parts
// of two ranges read apart would be read whole for each.
func TestDedupRewritesEachRangeBetweenRunsApart(t *testing.T) {
	const tpl, work = "vm-templates/debian/root", "appvms/work/private"
	const unit, own = btrfs.MaxCompressedExtent, 40 << 10
	h := newOptHarness(t)
	for _, vid := range []string{tpl, work} {
		if err := os.MkdirAll(filepath.Dir(h.Path(vid)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := wordSalad(1, 8*unit)
	if err := os.WriteFile(h.Path(tpl+".img"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	h.fullPass(tpl)
	srcExtents := map[uint64]bool{}
	for _, e := range btrfstest.Extents(t, h.Path(tpl+".img")) {
		srcExtents[e.DiskBytenr] = true
	}
	// Whole template units, each followed by 40 KiB of the AppVM's own.
	var img []byte
	for u := range 8 {
		img = append(img, src[u*unit:(u+1)*unit]...)
		img = append(img, wordSalad(uint64(200+u), own)...)
	}
	if err := os.WriteFile(h.Path(work+".img"), img, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sums(t, h.poolFiles())
	h.fullPass(work)
	end := map[uint64]uint64{} // extent -> where its last item in the image ended
	shared := 0
	for _, e := range btrfstest.Extents(t, h.Path(work+".img")) {
		if srcExtents[e.DiskBytenr] {
			shared++
			continue
		}
		if last, ok := end[e.DiskBytenr]; ok && last != e.Offset {
			t.Errorf("extent at %d holds ranges of the image apart: one ending at %d, one at %d", e.DiskBytenr, last, e.Offset)
		}
		end[e.DiskBytenr] = e.Offset + e.Length
	}
	if shared < 8 {
		t.Errorf("%d items share the template's extents, want the 8 units", shared)
	}
	for f, s := range want {
		if btrfstest.Digest(t, f) != s {
			t.Fatalf("%s changed", f)
		}
	}
}
