// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

func TestExtentsKinds(t *testing.T) {
	mnt := mountBtrfs(t)
	const manyBlocks = 2000 // more items than one 64 KiB search buffer holds

	tests := []struct {
		name  string
		setup func(t *testing.T, name string) []byte // returns the expected content
		check func(t *testing.T, ext []btrfs.Extent)
	}{
		{
			name: "inline",
			setup: func(t *testing.T, name string) []byte {
				data := randomData(100, 10)
				create(t, name, data)
				return data
			},
			check: func(t *testing.T, ext []btrfs.Extent) {
				want := []btrfs.Extent{{Offset: 0, Length: 100, RAMBytes: 100, Type: btrfs.ExtentInline}}
				if !equalIgnoringGeneration(ext, want) {
					t.Errorf("extents %+v, want %+v", ext, want)
				}
			},
		},
		{
			name: "regular",
			setup: func(t *testing.T, name string) []byte {
				data := randomData(mib, 11)
				create(t, name, data)
				return data
			},
			check: func(t *testing.T, ext []btrfs.Extent) {
				if got := spans(ext); !slices.Equal(got, []span{{0, mib}}) {
					t.Errorf("extents cover %v, want [0, 1 MiB)", got)
				}
				for _, e := range ext {
					if e.Type != btrfs.ExtentRegular || e.Compression != btrfs.CompressNone ||
						e.DiskBytenr == 0 || e.IsHole() || e.DiskNumBytes != e.RAMBytes {
						t.Errorf("extent %+v: want regular, uncompressed, on disk", e)
					}
				}
			},
		},
		{
			name: "prealloc",
			setup: func(t *testing.T, name string) []byte {
				f := create(t, name, nil)
				if err := unix.Fallocate(int(f.Fd()), 0, 0, mib); err != nil {
					t.Fatal(err)
				}
				return make([]byte, mib)
			},
			check: func(t *testing.T, ext []btrfs.Extent) {
				if got := spans(ext); !slices.Equal(got, []span{{0, mib}}) {
					t.Errorf("extents cover %v, want [0, 1 MiB)", got)
				}
				for _, e := range ext {
					if e.Type != btrfs.ExtentPrealloc || e.DiskBytenr == 0 {
						t.Errorf("extent %+v: want prealloc", e)
					}
				}
			},
		},
		{
			name: "zstd property",
			setup: func(t *testing.T, name string) []byte {
				f := create(t, name, nil)
				if err := btrfs.SetCompressionProperty(f, "zstd"); err != nil {
					t.Fatal(err)
				}
				data := textData(mib, 12)
				writeAt(t, f, data, 0)
				return data
			},
			check: func(t *testing.T, ext []btrfs.Extent) {
				if got := spans(ext); !slices.Equal(got, []span{{0, mib}}) {
					t.Errorf("extents cover %v, want [0, 1 MiB)", got)
				}
				for _, e := range ext {
					if e.Compression != btrfs.CompressZstd || e.DiskNumBytes >= e.Length ||
						e.Length > 128*kib {
						t.Errorf("extent %+v: want zstd, smaller on disk, at most 128 KiB", e)
					}
				}
			},
		},
		{
			name: "sparse",
			setup: func(t *testing.T, name string) []byte {
				f := create(t, name, nil)
				data := make([]byte, 2*mib)
				copy(data[mib:], randomData(4*kib, 13))
				writeAt(t, f, data[mib:mib+4*kib], mib)
				if err := f.Truncate(2 * mib); err != nil {
					t.Fatal(err)
				}
				return data
			},
			check: func(t *testing.T, ext []btrfs.Extent) {
				// no-holes (the mkfs default) stores no items for the holes.
				var data []span
				for _, e := range ext {
					if !e.IsHole() {
						data = append(data, span{e.Offset, e.Offset + e.Length})
					}
				}
				if !slices.Equal(data, []span{{mib, mib + 4*kib}}) {
					t.Errorf("data extents %v, want [1 MiB, +4 KiB)", data)
				}
			},
		},
		{
			name: "many extents",
			setup: func(t *testing.T, name string) []byte {
				// Every other 4 KiB block written: blocks cannot merge.
				f := create(t, name, nil)
				data := make([]byte, 2*manyBlocks*4*kib)
				block := randomData(4*kib, 14)
				for i := range manyBlocks {
					off := 2 * i * 4 * kib
					copy(data[off:], block)
					if _, err := f.WriteAt(block, int64(off)); err != nil {
						t.Fatal(err)
					}
				}
				if err := f.Truncate(int64(len(data))); err != nil {
					t.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				return data
			},
			check: func(t *testing.T, ext []btrfs.Extent) {
				if len(ext) != manyBlocks {
					t.Fatalf("%d extents, want %d", len(ext), manyBlocks)
				}
				for i, e := range ext {
					if e.Offset != uint64(2*i*4*kib) || e.Length != 4*kib {
						t.Fatalf("extent %d: %+v, want offset %d length 4096", i, e, 2*i*4*kib)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(mnt, tt.name)
			want := tt.setup(t, name)
			f := openFile(t, name)
			tt.check(t, extents(t, f, 0))
			if checksum(t, f) != sha(want) {
				t.Error("content differs from what was written")
			}
		})
	}
}

// The check from btrfs-facts.md: after a partial overwrite of a reflinked
// file, the extents newer than the generation taken at reflink time are
// exactly the rewritten range, and everything else is still shared.
func TestExtentsSinceGeneration(t *testing.T) {
	mnt := mountBtrfs(t)
	const size, off, n = 16 * mib, 8 * mib, 4 * mib

	data := textData(size, 20)
	img := create(t, filepath.Join(mnt, "img"), data)
	btrfstest.Sync(t, img.Name())
	rev := create(t, filepath.Join(mnt, "rev"), nil)
	if err := btrfs.Clone(rev, img); err != nil {
		t.Fatal(err)
	}
	gen, err := btrfs.Generation(img)
	if err != nil {
		t.Fatal(err)
	}
	revSum := checksum(t, rev)

	patch := textData(n, 21)
	writeAt(t, img, patch, off)
	copy(data[off:], patch)

	newExt := extents(t, img, gen)
	if got := spans(newExt); !slices.Equal(got, []span{{off, off + n}}) {
		t.Errorf("extents since generation %d cover %v, want [%d, %d)", gen, got, off, off+n)
	}
	for _, e := range newExt {
		if e.Generation < gen {
			t.Errorf("extent %+v older than generation %d", e, gen)
		}
	}
	if got := extents(t, rev, gen); len(got) != 0 {
		t.Errorf("reflinked copy has new extents %+v, want none", got)
	}

	all := extents(t, img, 0)
	if got := spans(all); !slices.Equal(got, []span{{0, size}}) {
		t.Errorf("all extents cover %v, want [0, %d)", got, size)
	}
	shared := diskAddrs(extents(t, rev, 0))
	for _, e := range all {
		if inRange(e, off, off+n) == shared[e.DiskBytenr] {
			t.Errorf("extent %+v: shared with the copy = %v, want the opposite", e, shared[e.DiskBytenr])
		}
	}
	if checksum(t, img) != sha(data) {
		t.Error("image content differs from what was written")
	}
	if checksum(t, rev) != revSum {
		t.Error("reflinked copy changed")
	}
}

func TestExtentIsHole(t *testing.T) {
	tests := []struct {
		e    btrfs.Extent
		want bool
	}{
		{btrfs.Extent{Type: btrfs.ExtentRegular, DiskBytenr: 0, Length: 4096}, true},
		{btrfs.Extent{Type: btrfs.ExtentRegular, DiskBytenr: 1 << 20, Length: 4096}, false},
		{btrfs.Extent{Type: btrfs.ExtentInline, Length: 100}, false},
		{btrfs.Extent{Type: btrfs.ExtentPrealloc, DiskBytenr: 1 << 20}, false},
	}
	for _, tt := range tests {
		if got := tt.e.IsHole(); got != tt.want {
			t.Errorf("%+v.IsHole() = %v, want %v", tt.e, got, tt.want)
		}
	}
}

func equalIgnoringGeneration(a, b []btrfs.Extent) bool {
	return slices.EqualFunc(a, b, func(x, y btrfs.Extent) bool {
		x.Generation, y.Generation = 0, 0
		return x == y
	})
}
