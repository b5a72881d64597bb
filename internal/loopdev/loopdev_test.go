// SPDX-License-Identifier: GPL-2.0-or-later

package loopdev_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/loopdev"
)

const mib = 1 << 20

// makeFile creates a sparse file of size bytes.
func makeFile(t *testing.T, name string, size int64) string {
	t.Helper()
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(name, size); err != nil {
		t.Fatal(err)
	}
	return name
}

// attach binds a new loop device to file and detaches it at cleanup.
func attach(t *testing.T, file string) string {
	t.Helper()
	btrfstest.RequireRoot(t)
	btrfstest.RequireCommands(t, "losetup")
	out, err := exec.Command("losetup", "--find", "--show", file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup --find --show %s: %v\n%s", file, err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

// sectors reads a block device's size in 512-byte sectors from sysfs.
func sectors(t *testing.T, dev string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "size"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBackedBy(t *testing.T) {
	dir := t.TempDir()
	img := makeFile(t, filepath.Join(dir, "img"), 4*mib)
	dev := attach(t, img)
	other := makeFile(t, filepath.Join(dir, "other"), 4*mib)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	replaced := makeFile(t, filepath.Join(dir, "replaced"), 4*mib)
	attach(t, replaced)
	if err := os.Rename(makeFile(t, filepath.Join(dir, "new"), 4*mib), replaced); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		path string
		want []string
	}{
		{"attached file", img, []string{dev}},
		{"through symlink", link, []string{dev}},
		{"unclean path", dir + "/./sub/../img", []string{dev}},
		{"file without device", other, nil},
		{"file replaced after attach", replaced, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loopdev.BackedBy(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("BackedBy(%s) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}

	t.Run("relative path", func(t *testing.T) {
		chdir(t, dir)
		got, err := loopdev.BackedBy("img")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []string{dev}) {
			t.Errorf("BackedBy(img) = %v, want [%s]", got, dev)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		if _, err := loopdev.BackedBy(filepath.Join(dir, "missing")); err == nil {
			t.Error("BackedBy(missing) succeeded, want error")
		}
	})
}

func TestRefreshCapacity(t *testing.T) {
	dir := t.TempDir()
	img := makeFile(t, filepath.Join(dir, "img"), 4*mib)
	devs := []string{attach(t, img), attach(t, img)}
	for _, dev := range devs {
		if got := sectors(t, dev); got != 4*mib/512 {
			t.Fatalf("%s: %d sectors before growing, want %d", dev, got, 4*mib/512)
		}
	}

	if err := os.Truncate(img, 12*mib); err != nil {
		t.Fatal(err)
	}
	n, err := loopdev.RefreshCapacity(img)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(devs) {
		t.Errorf("RefreshCapacity refreshed %d devices, want %d", n, len(devs))
	}
	for _, dev := range devs {
		if got := sectors(t, dev); got != 12*mib/512 {
			t.Errorf("%s: %d sectors after refresh, want %d", dev, got, 12*mib/512)
		}
	}

	other := makeFile(t, filepath.Join(dir, "other"), mib)
	if n, err := loopdev.RefreshCapacity(other); n != 0 || err != nil {
		t.Errorf("RefreshCapacity(unattached) = %d, %v; want 0, nil", n, err)
	}
}

// chdir changes the working directory for the rest of the test.
func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chdir(old); err != nil {
			t.Error(err)
		}
	})
}
