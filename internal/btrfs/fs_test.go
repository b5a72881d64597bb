// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// Generation bounds the generations of later writes from below, and a
// commit moves later writes to a newer generation.
func TestGeneration(t *testing.T) {
	mnt := mountBtrfs(t)
	f := create(t, filepath.Join(mnt, "f"), nil)
	generation := func() uint64 {
		t.Helper()
		g, err := btrfs.Generation(f)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	g0 := generation()
	if g0 == 0 {
		t.Fatal("Generation = 0 on a mounted filesystem")
	}
	writeAt(t, f, randomData(64*kib, 2), 0)
	btrfstest.Sync(t, f.Name())
	writeAt(t, f, randomData(64*kib, 3), 64*kib)
	g1 := generation()

	ext := extents(t, f, 0)
	if len(ext) != 2 {
		t.Fatalf("extents %+v, want two", ext)
	}
	first, second := ext[0].Generation, ext[1].Generation
	if first < g0 || second <= first || g1 < second {
		t.Errorf("generations: before %d, first write %d, after commit second write %d, then %d; want increasing, the writes strictly",
			g0, first, second, g1)
	}
	if got := extents(t, f, second); len(got) != 1 || got[0].Offset != 64*kib {
		t.Errorf("extents since generation %d: %+v, want the second write only", second, got)
	}
}

// SyncGeneration divides the writes made before it from those made after
// it, also on an idle filesystem, and stays put while nothing is written.
func TestSyncGeneration(t *testing.T) {
	mnt := mountBtrfs(t)
	f := create(t, filepath.Join(mnt, "f"), nil)
	syncGeneration := func() uint64 {
		t.Helper()
		g, err := btrfs.SyncGeneration(f)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	if _, err := f.WriteAt(randomData(64*kib, 4), 0); err != nil { // left to writeback
		t.Fatal(err)
	}
	g := syncGeneration()
	if again := syncGeneration(); again != g {
		t.Errorf("with nothing written, SyncGeneration moved from %d to %d", g, again)
	}
	writeAt(t, f, randomData(64*kib, 5), 64*kib)
	ext := extents(t, f, 0)
	if len(ext) != 2 || ext[0].Generation >= g || ext[1].Generation < g {
		t.Fatalf("extents %+v around SyncGeneration %d: want the first older, the second not", ext, g)
	}
	if got := extents(t, f, g); len(got) != 1 || got[0].Offset != 64*kib {
		t.Errorf("extents since %d: %+v, want the later write only", g, got)
	}
}

// Every btrfs-only call fails cleanly on another filesystem, with an error
// that names the file and keeps the errno.
func TestNotBtrfs(t *testing.T) {
	tmp := btrfstest.Tmpfs(t)
	f := create(t, filepath.Join(tmp, "f"), randomData(64*kib, 3))
	tests := []struct {
		name string
		call func(*os.File) error
	}{
		{"Generation", func(f *os.File) error { _, err := btrfs.Generation(f); return err }},
		{"Sync", btrfs.Sync},
		{"SyncGeneration", func(f *os.File) error { _, err := btrfs.SyncGeneration(f); return err }},
		{"Extents", func(f *os.File) error { _, err := btrfs.Extents(f, 0); return err }},
		{"DefragCompress", func(f *os.File) error { return btrfs.DefragCompress(f, 0, 64*kib, 0) }},
		{"ExtentAt", func(f *os.File) error { _, err := btrfs.ExtentAt(f, 0); return err }},
		{"LogicalInodes", func(f *os.File) error { _, err := btrfs.LogicalInodes(f, mib); return err }},
		{"LogicalInodesAt", func(f *os.File) error { _, err := btrfs.LogicalInodesAt(f, mib); return err }},
		{"ExtentRefCount", func(f *os.File) error { _, err := btrfs.ExtentRefCount(f, mib); return err }},
		{"InlineDataSize", func(f *os.File) error { _, err := btrfs.InlineDataSize(f); return err }},
		{"FilesystemID", func(f *os.File) error { _, err := btrfs.FilesystemID(f); return err }},
		{"SubvolumeID", func(f *os.File) error { _, err := btrfs.SubvolumeID(f); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(f)
			if !errors.Is(err, unix.ENOTTY) {
				t.Fatalf("%s on tmpfs = %v, want ENOTTY", tt.name, err)
			}
			if !strings.Contains(err.Error(), f.Name()) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}
