// SPDX-License-Identifier: GPL-2.0-or-later

package pool_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// noReflinkDir returns a fresh tmpfs, which has no reflinks.
func noReflinkDir(t *testing.T) string {
	t.Helper()
	btrfstest.RequireRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

func TestSetup(t *testing.T) {
	onBtrfs := btrfstest.Mount(t, 256<<20)
	plain := noReflinkDir(t)
	tests := []struct {
		name      string
		dir       string
		check     bool
		wantErr   error
		wantDirs  bool
		wantBtrfs bool
	}{
		{"btrfs", filepath.Join(onBtrfs, "vdo"), true, nil, true, true},
		{"no reflinks, checked", filepath.Join(plain, "vdo"), true, pool.ErrNoReflinks, false, false},
		{"no reflinks, unchecked", filepath.Join(plain, "vdo2"), false, nil, true, false},
		{"relative", "var/lib/vdo", true, volume.ErrInvalidName, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := pool.Setup(tt.dir, tt.check)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Setup: %v, want %v", err, tt.wantErr)
			}
			for _, top := range volume.TopDirs {
				_, statErr := os.Stat(filepath.Join(tt.dir, top))
				if (statErr == nil) != tt.wantDirs {
					t.Errorf("%s exists: %v, want %v", top, statErr == nil, tt.wantDirs)
				}
			}
			if tt.wantErr != nil && filepath.IsAbs(tt.dir) {
				if _, err := os.Stat(tt.dir); !os.IsNotExist(err) {
					t.Error("a refused setup left the directory it created")
				}
			}
			if err == nil && res.Btrfs != tt.wantBtrfs {
				t.Errorf("Btrfs = %v, want %v", res.Btrfs, tt.wantBtrfs)
			}
		})
	}
}

func TestRegistryOpensEachDirectoryOnce(t *testing.T) {
	mnt := btrfstest.Mount(t, 256<<20)
	reg := pooltest.Start(t, pooltest.Options{}).Pools
	a, err := reg.Open("vdo", mnt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Open("vdo", mnt)
	if err != nil || a != b {
		t.Fatalf("second open: %v, same pool %v", err, a == b)
	}
	if _, err := reg.Open("gone", filepath.Join(mnt, "missing")); err == nil {
		t.Fatal("opened a missing directory")
	}
	if len(reg.List()) != 1 {
		t.Fatalf("pools = %d", len(reg.List()))
	}
	size, used, err := a.Usage()
	if err != nil || size <= 0 || used <= 0 || used > size {
		t.Fatalf("usage %d/%d: %v", used, size, err)
	}
}

// A pool directory reached through a symlink is served where the link
// leads, as file-reflink serves it; the same directory under its own
// path, or a directory inside it reached through another link, is no
// second pool.
func TestPoolDirectoryBehindASymlink(t *testing.T) {
	mnt := btrfstest.Mount(t, 256<<20)
	real, link := filepath.Join(mnt, "disk", "qubes"), filepath.Join(mnt, "var-lib-qubes")
	if err := os.Mkdir(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Setup(real, true); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(mnt, "inside")
	if err := os.Symlink(filepath.Join(real, "appvms"), inside); err != nil {
		t.Fatal(err)
	}
	reg := pooltest.Start(t, pooltest.Options{}).Pools
	p, err := reg.Open("varlibqubes", link)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Volumes.Create(volume.Spec{VID: "appvms/work/private", RW: true, SaveOnStop: true, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(real, "appvms", "work", "private.img")); err != nil {
		t.Fatalf("the image is not where the link leads: %v", err)
	}
	if again, err := reg.Open("varlibqubes", link); err != nil || again != p {
		t.Fatalf("second open through the link: %v, same pool %v", err, again == p)
	}

	for _, tt := range []struct {
		name, dir string
		refused   bool
	}{
		{"the pool's own path", link, false},
		{"the directory the link leads to", real, true},
		{"inside it, through another link", filepath.Join(inside, "pool"), true},
		{"beside it", filepath.Join(mnt, "disk", "other"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := reg.CheckNesting(tt.dir)
			if refused := errors.Is(err, pool.ErrNested); refused != tt.refused {
				t.Fatalf("CheckNesting(%s) = %v, want refused %v", tt.dir, err, tt.refused)
			}
		})
	}
	if _, err := reg.Open("other", real); !errors.Is(err, pool.ErrNested) {
		t.Fatalf("opened the linked directory as a second pool: %v", err)
	}
	if n := len(reg.List()); n != 1 {
		t.Fatalf("%d pools served, want 1", n)
	}

	// Re-linked elsewhere, the link no longer holds the directory: it
	// opens under its own path.
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(mnt, "disk"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Open("other", real); err != nil {
		t.Fatalf("the directory a link no longer leads to: %v", err)
	}
}
