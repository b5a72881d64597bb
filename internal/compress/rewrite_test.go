// SPDX-License-Identifier: GPL-2.0-or-later

package compress_test

import (
	"crypto/rand"
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
			replaced, created := map[uint64]uint64{}, map[uint64]uint64{}
			res, shared := rewrite(t, path, tt.until, compress.NewRewriter(0, func(err error) { t.Error(err) }, replaced, created))
			if shared != tt.wantShared || res.SkippedShared != tt.wantShared {
				t.Errorf("handed %d bytes to onShared, result %d; want %d", shared, res.SkippedShared, tt.wantShared)
			}
			// What was made is not asserted: range defrag only starts the
			// writeback of the new extents, which Rewrite may list before
			// they exist. Range defrag is also best effort: under load it
			// may skip pages.
			if got := zstdBytes(t, path); len(replaced) > 0 != tt.wantRewrite || got >= fileBytes/2 != tt.wantRewrite {
				t.Errorf("replaced %v, %d of %d bytes zstd; want a rewrite: %v", replaced, got, fileBytes, tt.wantRewrite)
			}
			if !tt.wantRewrite && (res.BytesCompressed != 0 || len(created) != 0) {
				t.Errorf("compressed %d bytes, made %v; want none", res.BytesCompressed, created)
			}
			if btrfstest.Digest(t, path) != sha(tt.data) {
				t.Error("content changed")
			}
		})
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

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
