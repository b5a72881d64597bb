// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

func TestFlagsRoundTrip(t *testing.T) {
	mnt := mountBtrfs(t)
	tests := []struct {
		name string
		flag uint32
	}{
		// NOCOW can only be set while the file is empty; each case gets a
		// fresh file.
		{"nocow", btrfs.FlagNoCOW},
		{"compress", btrfs.FlagCompress},
		{"nocompress", btrfs.FlagNoCompress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := create(t, filepath.Join(mnt, tt.name), nil)
			orig, err := btrfs.Flags(f)
			if err != nil {
				t.Fatal(err)
			}
			if orig&tt.flag != 0 {
				t.Fatalf("new file already has flag %#x (flags %#x)", tt.flag, orig)
			}
			if err := btrfs.SetFlags(f, orig|tt.flag); err != nil {
				t.Fatal(err)
			}
			if got, err := btrfs.Flags(f); err != nil || got != orig|tt.flag {
				t.Fatalf("Flags = %#x, %v; want %#x", got, err, orig|tt.flag)
			}
			if err := btrfs.SetFlags(f, orig); err != nil {
				t.Fatal(err)
			}
			if got, err := btrfs.Flags(f); err != nil || got != orig {
				t.Fatalf("Flags = %#x, %v after restoring; want %#x", got, err, orig)
			}
		})
	}

	t.Run("conflicting flags", func(t *testing.T) {
		f := create(t, filepath.Join(mnt, "conflict"), nil)
		err := btrfs.SetFlags(f, btrfs.FlagCompress|btrfs.FlagNoCompress)
		if !errors.Is(err, unix.EINVAL) {
			t.Errorf("SetFlags(compress|nocompress) = %v, want EINVAL", err)
		}
	})
}

func TestSetCompressionProperty(t *testing.T) {
	mnt := mountBtrfs(t)
	tests := []struct {
		algo      string
		wantFlags uint32 // of FlagCompress|FlagNoCompress
		wantErr   error
	}{
		{"zstd", btrfs.FlagCompress, nil},
		{"lzo", btrfs.FlagCompress, nil},
		{"zlib", btrfs.FlagCompress, nil},
		{"none", btrfs.FlagNoCompress, nil},
		{"", 0, nil},
		{"bogus", 0, unix.EINVAL},
	}
	for _, tt := range tests {
		t.Run("algo="+tt.algo, func(t *testing.T) {
			f := create(t, filepath.Join(mnt, "f-"+tt.algo), nil)
			// Start from the opposite state so "" has something to clear.
			if err := btrfs.SetCompressionProperty(f, "zstd"); err != nil {
				t.Fatal(err)
			}
			err := btrfs.SetCompressionProperty(f, tt.algo)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("SetCompressionProperty(%q) = %v, want %v", tt.algo, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			flags, err := btrfs.Flags(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := flags & (btrfs.FlagCompress | btrfs.FlagNoCompress); got != tt.wantFlags {
				t.Errorf("compression flags %#x, want %#x", got, tt.wantFlags)
			}
			if got, err := btrfs.CompressionProperty(f); err != nil || got != tt.algo {
				t.Errorf("CompressionProperty = %q, %v; want %q", got, err, tt.algo)
			}
		})
	}
}
