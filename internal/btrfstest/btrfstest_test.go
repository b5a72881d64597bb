// SPDX-License-Identifier: GPL-2.0-or-later

package btrfstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/loopdev"
)

// mountLine returns mnt's line in /proc/mounts, or "".
func mountLine(t *testing.T, mnt string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == mnt {
			return line
		}
	}
	return ""
}

func TestMountAndCleanup(t *testing.T) {
	tests := []struct {
		name     string
		mount    func(t *testing.T) string
		fsType   int64
		wantOpts string
	}{
		{"btrfs", func(t *testing.T) string { return Mount(t, 0) }, unix.BTRFS_SUPER_MAGIC, ""},
		{"btrfs with options", func(t *testing.T) string { return Mount(t, 256<<20, "compress=zstd") },
			unix.BTRFS_SUPER_MAGIC, "compress=zstd"},
		{"tmpfs", func(t *testing.T) string { return Tmpfs(t) }, unix.TMPFS_MAGIC, ""},
	}
	for _, tt := range tests {
		var mnt string
		t.Run(tt.name, func(t *testing.T) {
			mnt = tt.mount(t)
			var st unix.Statfs_t
			if err := unix.Statfs(mnt, &st); err != nil {
				t.Fatal(err)
			}
			if st.Type != tt.fsType {
				t.Errorf("filesystem type %#x, want %#x", st.Type, tt.fsType)
			}
			if line := mountLine(t, mnt); !strings.Contains(line, tt.wantOpts) {
				t.Errorf("mount line %q lacks %q", line, tt.wantOpts)
			}
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
		if mnt == "" {
			continue
		}
		if line := mountLine(t, mnt); line != "" {
			t.Errorf("%s still mounted after the test: %s", mnt, line)
		}
		if _, err := os.Stat(mnt); !os.IsNotExist(err) {
			t.Errorf("mount point %s left behind: %v", mnt, err)
		}
	}
}

// recorder is a testing.TB that records Skip, Fatal and Error instead of
// stopping the goroutine or failing the test.
type recorder struct {
	testing.TB
	skipped, failed bool
	errors          []string
}

func (r *recorder) Helper()               {}
func (r *recorder) Skip(...any)           { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// lateClose is how long TestLoopReleasedLate keeps the loop device open
// after unmount: longer than cleanup used to wait before it reported a
// leak, as a device probe on a loaded machine can take.
const lateClose = 7 * time.Second

// TestLoopReleasedLate holds the loop device open across the unmount, so
// that the kernel detaches it only at the late close, and checks that
// cleanup waits for that instead of reporting a leak.
func TestLoopReleasedLate(t *testing.T) {
	RequireRoot(t)
	RequireCommands(t, "mkfs.btrfs", "mount")
	img := makeImage(t, DefaultSize)
	run(t, "mkfs.btrfs", "-q", "-f", img)
	mnt := t.TempDir()
	run(t, "mount", "-t", "btrfs", "-o", "loop", img, mnt)
	devs, err := loopdev.BackedBy(img)
	if err != nil || len(devs) != 1 {
		unmount(t, mnt)
		t.Fatalf("loop devices of %s: %v, %v; want one", img, devs, err)
	}
	holder, err := os.Open(devs[0])
	if err != nil {
		unmount(t, mnt)
		t.Fatal(err)
	}
	unmount(t, mnt)
	start := time.Now()
	timer := time.AfterFunc(lateClose, func() { holder.Close() })
	t.Cleanup(func() {
		if timer.Stop() {
			holder.Close()
		}
	})

	r := &recorder{TB: t}
	waitLoopReleased(r, img)
	if len(r.errors) > 0 {
		t.Fatalf("cleanup reported a leak: %v", r.errors)
	}
	if waited := time.Since(start); waited < lateClose {
		t.Fatalf("loop device detached %s after unmount, before its last close at %s: the test held nothing", waited, lateClose)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		env                 string
		wantSkip, wantFatal bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	}
	for _, tt := range tests {
		t.Run(RequireEnv+"="+tt.env, func(t *testing.T) {
			t.Setenv(RequireEnv, tt.env)
			r := &recorder{TB: t}
			unavailable(r, "no %s here", "btrfs")
			if r.skipped != tt.wantSkip || r.failed != tt.wantFatal {
				t.Errorf("skipped %v, failed %v; want %v, %v", r.skipped, r.failed, tt.wantSkip, tt.wantFatal)
			}
		})
	}
}
