// SPDX-License-Identifier: GPL-2.0-or-later

package compress_test

import (
	"crypto/rand"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
)

const fileBytes = 4 << 20

// Rewrite defrags what only the file references, hands the rest to
// onShared, leaves alone what does not compress or lies outside the range,
// and records what it replaced.
func TestRewrite(t *testing.T) {
	mnt := btrfstest.Mount(t, 512<<20)
	tests := []struct {
		name        string
		data        []byte
		reflinked   bool   // a copy shares the file's extents
		until       uint64 // Range.Until; 0: the file's generation
		wantShared  uint64 // bytes handed to onShared
		wantRewrite bool   // extents replaced, the file now mostly zstd
	}{
		{name: "exclusive", data: btrfstest.Text("lone", fileBytes), wantRewrite: true},
		{name: "shared", data: btrfstest.Text("pair", fileBytes), reflinked: true, wantShared: fileBytes},
		{name: "incompressible", data: random(t, fileBytes)},
		{name: "newer than the range", data: btrfstest.Text("late", fileBytes), until: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(mnt, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.reflinked {
				btrfstest.Reflink(t, path, path+".copy")
			}
			btrfstest.Sync(t, mnt) // back references exist once committed
			before := btrfstest.Extents(t, path)
			replaced, created := map[uint64]uint64{}, map[uint64]uint64{}
			res, shared := rewrite(t, path, tt.until, compress.NewRewriter(0, func(err error) { t.Error(err) }, replaced, created))
			if shared != tt.wantShared || res.SkippedShared != tt.wantShared {
				t.Errorf("handed %d bytes to onShared, result %d; want %d", shared, res.SkippedShared, tt.wantShared)
			}
			// Range defrag is best effort (under load it may skip pages),
			// so the file must be mostly zstd, not wholly.
			if got := zstdBytes(t, path); len(replaced) > 0 != tt.wantRewrite || got >= fileBytes/2 != tt.wantRewrite {
				t.Errorf("replaced %v, %d of %d bytes zstd; want a rewrite: %v", replaced, got, fileBytes, tt.wantRewrite)
			}
			checkMade(t, path, before, res, created)
			if btrfstest.Digest(t, path) != sha(tt.data) {
				t.Error("content changed")
			}
		})
	}
}

// Rewrite reports the extents its range defrags made once they are
// written back: range defrag only starts the writeback, and a listing
// taken before it ends shows old extents in place of the last new ones,
// under-reports what was compressed and rewrites it again. Whether the
// listing comes too early is a race, lost about half the time by a
// single range, so each file is rewritten a chunk at a time, as the
// optimizer does, and every chunk's report is checked.
func TestRewriteReportsWrittenBackExtents(t *testing.T) {
	const chunk = 512 << 10
	mnt := btrfstest.Mount(t, 512<<20)
	tests := []struct {
		name string
		data []byte
	}{
		{name: "text", data: btrfstest.Text("chunked", fileBytes)},
		{name: "half random", data: halfRandom(t, fileBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(mnt, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			btrfstest.Sync(t, mnt)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			until, err := btrfs.Generation(f)
			if err != nil {
				t.Fatal(err)
			}
			for off := uint64(0); off < fileBytes; off += chunk {
				before := btrfstest.Extents(t, path)
				created := map[uint64]uint64{}
				w := compress.NewRewriter(0, func(err error) { t.Error(err) }, nil, created)
				res, err := w.Rewrite(f, compress.Range{Offset: off, Length: chunk, Until: until}, compress.DefaultMinSaving,
					func(pc btrfs.Extent) (compress.Result, error) {
						t.Errorf("extent %+v taken for shared", pc)
						return compress.Result{}, nil
					})
				if err != nil {
					t.Fatal(err)
				}
				if res.BytesCompressed == 0 {
					t.Errorf("chunk at %d: nothing compressed", off)
				}
				checkMade(t, path, before, res, created)
			}
			if btrfstest.Digest(t, path) != sha(tt.data) {
				t.Error("content changed")
			}
		})
	}
}

// checkMade checks, once the file at path is written back and committed,
// that it holds exactly the extents a rewrite made (created) besides the
// ones it had before, and that res counts the bytes they hold compressed.
func checkMade(t *testing.T, path string, before []btrfs.Extent, res compress.Result, created map[uint64]uint64) {
	t.Helper()
	btrfstest.Sync(t, path)
	made, compressed := madeSince(before, btrfstest.Extents(t, path))
	if res.BytesCompressed != compressed || !maps.Equal(created, made) {
		t.Errorf("compressed %d bytes, made %v; the file has %d bytes compressed in %v",
			res.BytesCompressed, created, compressed, made)
	}
}

// rewrite runs w on the whole file at path, up to generation until (0:
// the file's), and returns its result and the bytes it handed to onShared.
func rewrite(t *testing.T, path string, until uint64, w *compress.Rewriter) (compress.Result, uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if until == 0 {
		if until, err = btrfs.Generation(f); err != nil {
			t.Fatal(err)
		}
	}
	var shared uint64
	res, err := w.Rewrite(f, compress.Range{Length: fileBytes, Until: until}, compress.DefaultMinSaving,
		func(pc btrfs.Extent) (compress.Result, error) {
			shared += pc.Length
			return compress.Result{SkippedShared: pc.Length}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return res, shared
}

// madeSince returns the disk extents (bytenr -> disk bytes) of after
// that before does not have, and the file bytes they hold compressed.
func madeSince(before, after []btrfs.Extent) (map[uint64]uint64, uint64) {
	old := map[uint64]bool{}
	for _, e := range before {
		old[e.DiskBytenr] = true
	}
	made, compressed := map[uint64]uint64{}, uint64(0)
	for _, e := range after {
		if old[e.DiskBytenr] || e.IsHole() {
			continue
		}
		made[e.DiskBytenr] = e.DiskNumBytes
		if e.Compression != btrfs.CompressNone {
			compressed += e.Length
		}
	}
	return made, compressed
}

// halfRandom is n bytes of text with every other block random: slower to
// compress than text alone, and still worth it.
func halfRandom(t *testing.T, n int) []byte {
	t.Helper()
	b := btrfstest.Text("half", n)
	noise := random(t, n)
	for off := 0; off < n; off += 2 * 4096 {
		copy(b[off:min(off+4096, n)], noise[off:])
	}
	return b
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
