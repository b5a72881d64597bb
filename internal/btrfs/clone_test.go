// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

func TestClone(t *testing.T) {
	mnt := mountBtrfs(t)
	tmp := btrfstest.Tmpfs(t)
	data := randomData(8*mib, 1)

	tests := []struct {
		name        string
		srcDir      string
		dstDir      string
		wantErr     error // nil: the clone must succeed and share extents
		unsupported bool
	}{
		{name: "same btrfs", srcDir: mnt, dstDir: mnt},
		{name: "tmpfs into btrfs", srcDir: tmp, dstDir: mnt, wantErr: unix.EXDEV, unsupported: true},
		{name: "btrfs into tmpfs", srcDir: mnt, dstDir: tmp, wantErr: unix.EXDEV, unsupported: true},
		{name: "within tmpfs", srcDir: tmp, dstDir: tmp, wantErr: unix.EOPNOTSUPP, unsupported: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := create(t, filepath.Join(tt.srcDir, fmt.Sprintf("src%d", i)), data)
			dst := create(t, filepath.Join(tt.dstDir, fmt.Sprintf("dst%d", i)), nil)

			err := btrfs.Clone(dst, src)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Clone = %v, want %v", err, tt.wantErr)
				}
				if got := btrfs.CloneUnsupported(err); got != tt.unsupported {
					t.Errorf("CloneUnsupported(%v) = %v, want %v", err, got, tt.unsupported)
				}
				if !strings.Contains(err.Error(), src.Name()) || !strings.Contains(err.Error(), dst.Name()) {
					t.Errorf("error %q does not name both files", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if checksum(t, dst) != checksum(t, src) {
				t.Fatal("clone content differs from source")
			}
			srcExt, dstExt := extents(t, src, 0), extents(t, dst, 0)
			if len(srcExt) == 0 || len(srcExt) != len(dstExt) {
				t.Fatalf("source has %d extents, clone %d", len(srcExt), len(dstExt))
			}
			for j := range srcExt {
				s, d := srcExt[j], dstExt[j]
				if s.DiskBytenr == 0 || s.DiskBytenr != d.DiskBytenr || s.Offset != d.Offset || s.Length != d.Length {
					t.Errorf("extent %d not shared: source %+v, clone %+v", j, s, d)
				}
			}
		})
	}
}

func TestCloneUnsupported(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{unix.EBADF, true},
		{unix.EINVAL, true},
		{unix.EOPNOTSUPP, true},
		{unix.ENOTSUP, true},
		{unix.EXDEV, true},
		{fmt.Errorf("clone a into b: %w", unix.EXDEV), true},
		{unix.EPERM, false},
		{unix.ENOSPC, false},
		{unix.EIO, false},
		{errors.New("invalid argument"), false},
	}
	for _, tt := range tests {
		if got := btrfs.CloneUnsupported(tt.err); got != tt.want {
			t.Errorf("CloneUnsupported(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestIsBtrfs(t *testing.T) {
	mnt := mountBtrfs(t)
	tmp := btrfstest.Tmpfs(t)
	tests := []struct {
		name    string
		path    string
		want    bool
		wantErr bool
	}{
		{"btrfs mount", mnt, true, false},
		{"tmpfs", tmp, false, false},
		{"missing", filepath.Join(tmp, "missing"), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := btrfs.IsBtrfs(tt.path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("IsBtrfs(%s) error = %v, want error %v", tt.path, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("IsBtrfs(%s) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestSupportsReflink(t *testing.T) {
	mnt := mountBtrfs(t)
	tmp := btrfstest.Tmpfs(t)
	tests := []struct {
		name    string
		dir     string
		want    bool
		wantErr error
	}{
		{"btrfs", mnt, true, nil},
		{"tmpfs", tmp, false, nil},
		{"missing dir", filepath.Join(tmp, "missing"), false, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := btrfs.SupportsReflink(tt.dir)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SupportsReflink(%s) error = %v, want %v", tt.dir, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("SupportsReflink(%s) = %v, want %v", tt.dir, got, tt.want)
			}
		})
	}
	for _, dir := range []string{mnt, tmp} {
		if left := names(t, dir); len(left) != 0 {
			t.Errorf("probe left files in %s: %v", dir, left)
		}
	}
}
