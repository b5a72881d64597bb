// SPDX-License-Identifier: GPL-2.0-or-later

package compress_test

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
)

// Every optimizer job asks for the zstd property on the image and its
// directory, every compress run on each file; a file that has it must be
// left untouched (no transaction, same ctime).
func TestSetZstdPropertySetsItOnce(t *testing.T) {
	mnt := btrfstest.Mount(t, 256<<20)
	tests := []struct {
		before      string // "" leaves the property unset
		wantChanged bool
	}{
		{"", true},
		{"none", true},
		{"lzo", true},
		{"zstd", false},
	}
	for _, tt := range tests {
		t.Run("before="+tt.before, func(t *testing.T) {
			f, err := os.Create(filepath.Join(mnt, "f-"+tt.before))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tt.before != "" {
				if err := btrfs.SetCompressionProperty(f, tt.before); err != nil {
					t.Fatal(err)
				}
			}
			ctime := func() unix.Timespec {
				var st unix.Stat_t
				if err := unix.Fstat(int(f.Fd()), &st); err != nil {
					t.Fatal(err)
				}
				return st.Ctim
			}
			was := ctime()
			if err := compress.SetZstdProperty(f); err != nil {
				t.Fatal(err)
			}
			if got, err := btrfs.CompressionProperty(f); err != nil || got != "zstd" {
				t.Fatalf("property = %q, %v; want zstd", got, err)
			}
			if changed := ctime() != was; changed != tt.wantChanged {
				t.Errorf("ctime changed: %v, want %v", changed, tt.wantChanged)
			}
		})
	}
}

// Files compresses what only each file references and lists, with the
// reason, the files it cannot work on; a shared file is left as it is.
func TestFiles(t *testing.T) {
	mnt := btrfstest.Mount(t, 512<<20)
	tests := []struct {
		name       string
		flag       uint32 // an inode flag set on the file
		reflinked  bool   // a copy outside the tree shares the file's extents
		wantSkip   string // in the reason the file is listed with; "" if not
		wantShared uint64
		compressed bool
	}{
		{name: "lone", compressed: true},
		{name: "shared", reflinked: true, wantShared: fileBytes},
		{name: "no-COW", flag: btrfs.FlagNoCOW, wantSkip: "no-COW"},
		{name: "immutable", flag: btrfs.FlagImmutable, wantSkip: "immutable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(mnt, tt.name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "file")
			data := btrfstest.Text(tt.name, fileBytes)
			btrfstest.WriteWithFlag(t, path, data, tt.flag)
			if tt.reflinked {
				btrfstest.Reflink(t, path, filepath.Join(mnt, tt.name+".copy"))
			}
			res := compressFiles(t, dir, path, tt.compressed)
			var skipped string
			for _, s := range res.Skipped {
				skipped += s.Reason
			}
			if (tt.wantSkip == "") != (skipped == "") || !strings.Contains(skipped, tt.wantSkip) {
				t.Errorf("skipped %+v, want a reason with %q", res.Skipped, tt.wantSkip)
			}
			if res.SkippedShared != tt.wantShared {
				t.Errorf("left shared %d bytes, want %d", res.SkippedShared, tt.wantShared)
			}
			if got := zstdBytes(t, path); got >= fileBytes/2 != tt.compressed || !tt.compressed && res.BytesCompressed != 0 {
				t.Errorf("%d of %d bytes zstd, %d reported compressed; want most: %v", got, fileBytes, res.BytesCompressed, tt.compressed)
			}
			if btrfstest.Digest(t, path) != sha(data) {
				t.Error("content changed")
			}
		})
	}
}

// compressFiles runs Files on dir, which holds the file at path, and
// when the file is to be compressed, once more if less than half of it is:
// range defrag is best effort, it skips pages under load, and the next run
// picks them up.
func compressFiles(t *testing.T, dir, path string, compressed bool) compress.FilesResult {
	t.Helper()
	var res compress.FilesResult
	for run := 0; run == 0 || compressed && run < 2 && zstdBytes(t, path) < fileBytes/2; run++ {
		var told string
		r, err := compress.Files(context.Background(), []string{dir}, 0, func(p string, _ uint64) { told = p })
		if err != nil {
			t.Fatal(err)
		}
		if told != path {
			t.Errorf("progress told %q, want %q", told, path)
		}
		res.Add(r.Result)
		res.Skipped = r.Skipped
	}
	return res
}

// zstdBytes is how much of the file at path is stored compressed with
// zstd, once its writeback is done: range defrag only starts it.
func zstdBytes(t *testing.T, path string) uint64 {
	t.Helper()
	btrfstest.Sync(t, path)
	var n uint64
	for _, e := range btrfstest.Extents(t, path) {
		if e.Compression == btrfs.CompressZstd {
			n += e.Length
		}
	}
	return n
}

func sha(data []byte) [32]byte { return sha256.Sum256(data) }
