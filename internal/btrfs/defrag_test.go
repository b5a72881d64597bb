// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// Compressing a range of a reflinked image rewrites that range only: it
// ends up zstd-compressed and private, while the rest stays shared with the
// copy (the second half of the first check in btrfs-facts.md).
func TestDefragCompress(t *testing.T) {
	mnt := mountBtrfs(t)
	const size, off, n = 16 * mib, 8 * mib, 4 * mib

	tests := []struct {
		name  string
		level int
	}{
		{"default level", 0},
		{"level 9", 9},
		{"negative level", -5},
	}
	compressed := make(map[int]uint64) // level -> disk bytes of the range
	levelsWork := true
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := textData(size, 30)
			img := create(t, filepath.Join(mnt, tt.name+".img"), data)
			rev := create(t, filepath.Join(mnt, tt.name+".rev"), nil)
			if err := btrfs.Clone(rev, img); err != nil {
				t.Fatal(err)
			}
			btrfstest.Sync(t, img.Name())
			before := uniqueDiskBytes(extents(t, img, 0), extents(t, rev, 0))

			if !compressRange(t, img, diskAddrs(extents(t, rev, 0)), off, n, tt.level) {
				levelsWork = false
			}

			shared := diskAddrs(extents(t, rev, 0))
			all := extents(t, img, 0)
			for _, e := range all {
				inside := inRange(e, off, off+n)
				if !inside && e.Offset < off+n && e.Offset+e.Length > off {
					t.Errorf("extent %+v straddles the range [%d, %d)", e, off, off+n)
				}
				if inside && (e.Compression != btrfs.CompressZstd || shared[e.DiskBytenr]) {
					t.Errorf("extent %+v inside the range: want zstd and not shared", e)
				}
				if !inside && (e.Compression != btrfs.CompressNone || !shared[e.DiskBytenr]) {
					t.Errorf("extent %+v outside the range: want uncompressed and shared", e)
				}
			}
			var inside []btrfs.Extent
			for _, e := range all {
				if inRange(e, off, off+n) {
					inside = append(inside, e)
				}
			}
			compressed[tt.level] = uniqueDiskBytes(inside)
			after := uniqueDiskBytes(all, extents(t, rev, 0))
			// The old uncompressed range stays referenced by the copy, so
			// usage grows by the compressed size, far less than the range.
			if after <= before || after-before >= n/4 {
				t.Errorf("disk usage %d -> %d, want growth in (0, %d)", before, after, n/4)
			}
			if checksum(t, img) != sha(data) || checksum(t, rev) != sha(data) {
				t.Error("content changed")
			}
			logCompsize(t, img.Name())
		})
	}
	// A fast negative level compresses this text visibly worse, which shows
	// the level reached the kernel.
	if def, neg := compressed[0], compressed[-5]; levelsWork && (def == 0 || neg <= def) {
		t.Errorf("range takes %d bytes at level -5 and %d at the default, want more at -5", neg, def)
	}
}

// compressRange compresses [off, off+n) of img the way a caller has to.
// Defrag is best effort: the kernel may leave pieces of the range as they
// were (it stops when the thread has a signal pending and passes over
// pages it cannot take), and still succeed. So after each pass it lists
// the extents that still point at old data and compresses those pieces
// again. It reports false if the kernel refused the level.
func compressRange(t *testing.T, img *os.File, old map[uint64]bool, off, n uint64, level int) (levelOK bool) {
	t.Helper()
	levelOK = true
	todo := []span{{off, off + n}}
	for attempt := 1; len(todo) > 0; attempt++ {
		if attempt > 5 {
			t.Fatalf("pieces %v of the range still not rewritten after 5 passes", todo)
		}
		if attempt > 1 {
			t.Logf("pass %d: the kernel left %v as it was", attempt, todo)
		}
		for _, s := range todo {
			err := btrfs.DefragCompress(img, s.Off, s.End-s.Off, level)
			if errors.Is(err, btrfs.ErrLevelUnsupported) {
				// What a caller does on kernels before 6.15.
				t.Logf("%v; going on without a level", err)
				levelOK, level = false, 0
				err = btrfs.DefragCompress(img, s.Off, s.End-s.Off, level)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := img.Sync(); err != nil {
			t.Fatal(err)
		}
		todo = nil
		for _, e := range extents(t, img, 0) {
			lo, hi := max(e.Offset, off), min(e.Offset+e.Length, off+n)
			if old[e.DiskBytenr] && lo < hi {
				todo = append(todo, span{lo, hi})
			}
		}
	}
	return levelOK
}

func TestDefragCompressArgs(t *testing.T) {
	mnt := mountBtrfs(t)
	data := textData(mib, 31)
	f := create(t, filepath.Join(mnt, "f"), data)
	tests := []struct {
		name           string
		offset, length uint64
		level          int
		wantErr        error
	}{
		// A zero length would make the kernel compress to EOF.
		{"zero length is a no-op", 0, 0, 0, nil},
		{"overflowing range", 1, math.MaxUint64, 0, unix.EINVAL},
		{"level beyond s8", 0, mib, 200, unix.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := btrfs.DefragCompress(f, tt.offset, tt.length, tt.level)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("DefragCompress = %v, want %v", err, tt.wantErr)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			for _, e := range extents(t, f, 0) {
				if e.Compression != btrfs.CompressNone {
					t.Errorf("extent %+v was compressed", e)
				}
			}
			if checksum(t, f) != sha(data) {
				t.Error("content changed")
			}
		})
	}
}

// logCompsize shows compsize's view of a file, when the tool is there, to
// make failures easier to read.
func logCompsize(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath("compsize"); err != nil {
		return
	}
	out, err := exec.Command("compsize", "-b", name).CombinedOutput()
	t.Logf("compsize %s (err %v):\n%s", name, err, out)
}
