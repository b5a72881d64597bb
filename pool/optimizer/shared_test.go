// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// Extents that two revisions share, and the image no longer holds, are
// compressed through a copy deduplicated into both, so they stay shared;
// when a file outside the volume shares them too, they are left alone.
func TestFullPassCompressesWhatRevisionsShare(t *testing.T) {
	const text = 8 * mib
	for _, tc := range []struct {
		name       string
		stray      bool // a copy outside the volume shares the revisions' extents
		gap        bool // a block of the extent was overwritten before the revisions
		compressed bool
	}{
		{name: "revisions alone", compressed: true},
		// The overwritten block is referenced by no file: the copy skips it.
		{name: "with a block no file references", gap: true, compressed: true},
		{name: "shared beyond the volume", stray: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			const vid = "appvms/old/private"
			img, revs := h.layOutRevisionsSharing(vid, text, tc.gap)
			files := append([]string{img}, revs...)
			if tc.stray {
				stray := h.Path("appvms/old/stray-copy")
				btrfstest.Reflink(t, revs[0], stray)
				files = append(files, stray)
			}
			want := sums(t, files)
			res := h.fullPass(vid)
			if got := sums(t, files); !maps.Equal(got, want) {
				t.Fatal("the pass changed the files' content")
			}
			// Each extent counted once: the revisions (and the copy) still
			// share all of it.
			shared := measure(t, files[1:]...)
			if shared.Total.UncompressedBytes > text {
				t.Errorf("the revisions share less than before: %+v", shared.Total)
			}
			z := zstdBytes(measure(t, revs[0]))
			if tc.compressed && (z < text-mib || res.Counters.Get(optimizer.CountCompressBytesCompressed) < text-mib || res.Counters.Get(optimizer.CountCompressBytesSkippedShared) != 0) {
				t.Errorf("%d bytes zstd, result %+v; want the revisions' %d compressed", z, res, text)
			}
			if !tc.compressed && (z != 0 || res.Counters.Get(optimizer.CountCompressBytesSkippedShared) < text) {
				t.Errorf("%d bytes zstd, result %+v; want the revisions left alone", z, res)
			}
		})
	}
}

// layOutRevisionsSharing writes a volume as file-reflink leaves it, never
// seen by the daemon: two revisions sharing n bytes of compressible text,
// and a clean image rewritten since with noise. With gap, the text's
// second block is overwritten before the revisions are made, so that its
// extent holds a block none of them references. It returns the image and
// the revisions.
func (h optHarness) layOutRevisionsSharing(vid string, n int, gap bool) (img string, revs []string) {
	h.T.Helper()
	img = h.writeText(vid, n, gap)
	for _, name := range []string{".img.1@2025-01-01T00:00:00Z", ".img.2@2025-01-02T00:00:00Z"} {
		revs = append(revs, h.Path(vid+name))
		btrfstest.Reflink(h.T, img, revs[len(revs)-1])
	}
	btrfstest.WriteAt(h.T, img, 0, noise(1, n))
	return img, revs
}

// writeText writes vid's clean image, never seen by the daemon: n bytes of
// compressible text in large uncompressed extents. With gap, its second
// block is then overwritten, so that the first extent's first item is one
// block long and the block after it references another extent.
func (h optHarness) writeText(vid string, n int, gap bool) string {
	h.T.Helper()
	if err := os.MkdirAll(filepath.Dir(h.Path(vid)), 0o755); err != nil {
		h.T.Fatal(err)
	}
	img := h.Path(vid + ".img")
	if err := os.WriteFile(img, btrfstest.Text(vid, n), 0o644); err != nil {
		h.T.Fatal(err)
	}
	btrfstest.Sync(h.T, img)
	if gap {
		btrfstest.WriteAt(h.T, img, 4096, noise(2, 4096))
		btrfstest.Sync(h.T, img)
	}
	return img
}
