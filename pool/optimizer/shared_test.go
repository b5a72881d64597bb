// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// Extents that two revisions share, and the image no longer holds, are
// compressed through a copy deduplicated into both, so they stay shared;
// when a file outside the volume shares them too, or a snapshot of the
// pool's subvolume (whose tree leaves are its source's until either
// changes), they are left alone: the copy would not free them.
func TestFullPassCompressesWhatRevisionsShare(t *testing.T) {
	const text = 8 * mib
	for _, tc := range []struct {
		name     string
		stray    bool // a copy outside the volume shares the revisions' extents
		snapshot bool // a snapshot of the filesystem holds the revisions too
		// extentBytes cuts the text into extents of this size (0: as the
		// kernel writes it), so that the revisions' items fill many tree
		// leaves, most of which the pass does not change before it looks.
		extentBytes int
		// gaps are ranges of the text overwritten before the revisions
		// were made: no file references them in the text's extent any
		// more, and the copy leaves them out.
		gaps       []span
		compressed bool
	}{
		{name: "revisions alone", compressed: true},
		{name: "a block no file references", gaps: []span{{4096, 4096}}, compressed: true},
		{name: "unreferenced first and last blocks", gaps: []span{{0, 4096}, {text - 4096, 4096}}, compressed: true},
		{name: "two gaps, one wider than the copy buffer", gaps: []span{{4096, 8192}, {mib, 3 * mib}}, compressed: true},
		{name: "shared beyond the volume", stray: true},
		{name: "held by a snapshot", snapshot: true, extentBytes: 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			const vid = "appvms/old/private"
			img, revs := h.layOutRevisionsSharing(vid, text, tc.extentBytes, tc.gaps...)
			var overwritten int
			for _, g := range tc.gaps {
				overwritten += int(g.length)
			}
			files := append([]string{img}, revs...)
			if tc.stray {
				stray := h.Path("appvms/old/stray-copy")
				btrfstest.Reflink(t, revs[0], stray)
				files = append(files, stray)
			}
			mnt := filepath.Dir(h.Dir)
			if tc.snapshot {
				snapshot(t, mnt, filepath.Join(mnt, "backup"))
			}
			used := h.dataUsed(mnt)
			want := sums(t, files)
			res := h.fullPass(vid)
			if after := h.dataUsed(mnt); after > used {
				t.Errorf("the filesystem's data grew from %d to %d bytes", used, after)
			}
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
			if want := uint64(text - overwritten - mib); tc.compressed && (z < want || uint64(res.Counters.Get(optimizer.CountCompressBytesCompressed)) < want || res.Counters.Get(optimizer.CountCompressBytesSkippedShared) != 0) {
				t.Errorf("%d bytes zstd, result %+v; want the revisions' %d bytes of text compressed", z, res, text-overwritten)
			}
			if !tc.compressed && (z != 0 || res.Counters.Get(optimizer.CountCompressBytesSkippedShared) < text-4096) {
				t.Errorf("%d bytes zstd, result %+v; want the revisions left alone", z, res)
			}
		})
	}
}

// layOutRevisionsSharing writes a volume as file-reflink leaves it, never
// seen by the daemon: two revisions sharing n bytes of compressible text
// (in extents of extentBytes, if not 0), in which gaps were overwritten
// with noise before the revisions were made, and a clean image rewritten
// since with noise. It returns the image and the revisions.
func (h optHarness) layOutRevisionsSharing(vid string, n, extentBytes int, gaps ...span) (img string, revs []string) {
	h.T.Helper()
	img = h.writeImage(vid, btrfstest.Text(vid, n), extentBytes, gaps...)
	for _, name := range []string{".img.1@2025-01-01T00:00:00Z", ".img.2@2025-01-02T00:00:00Z"} {
		revs = append(revs, h.Path(vid+name))
		btrfstest.Reflink(h.T, img, revs[len(revs)-1])
	}
	btrfstest.WriteAt(h.T, img, 0, noise(1, n))
	return img, revs
}

// writeImage writes vid's clean image, never seen by the daemon: data in
// uncompressed extents, of extentBytes each if not 0, else as large as the
// kernel makes them; then noise over each of overwrites, so that those
// ranges of the data's extents are referenced by no file.
func (h optHarness) writeImage(vid string, data []byte, extentBytes int, overwrites ...span) string {
	h.T.Helper()
	if err := os.MkdirAll(filepath.Dir(h.Path(vid)), 0o755); err != nil {
		h.T.Fatal(err)
	}
	img := h.Path(vid + ".img")
	if extentBytes == 0 {
		extentBytes = len(data)
	}
	writeInExtents(h.T, img, data, extentBytes)
	for i, o := range overwrites {
		btrfstest.WriteAt(h.T, img, int64(o.offset), noise(uint64(10+i), int(o.length)))
	}
	if len(overwrites) > 0 {
		btrfstest.Sync(h.T, img)
	}
	return img
}

// span is a byte range of a file.
type span struct{ offset, length uint64 }

// snapshot makes a read-only snapshot of the subvolume at src, as a backup
// tool does.
func snapshot(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("btrfs", "subvolume", "snapshot", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("btrfs subvolume snapshot: %v: %s", err, out)
	}
}

// writeInExtents writes data to path, made anew, in extents of size
// bytes: every other piece first, then the rest, each half written back on
// its own so that no two pieces' delayed allocations merge.
func writeInExtents(t *testing.T, path string, data []byte, size int) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, first := range []int{0, size} {
		if first >= len(data) {
			break
		}
		for off := first; off < len(data); off += 2 * size {
			btrfstest.WriteAt(t, path, int64(off), data[off:min(off+size, len(data))])
		}
		btrfstest.Sync(t, path)
	}
}
