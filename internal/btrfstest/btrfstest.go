// SPDX-License-Identifier: GPL-2.0-or-later

// Package btrfstest gives tests a real, freshly made btrfs: a sparse image
// file, mkfs.btrfs, and a loop mount that is undone when the test ends.
//
// Tests that need it skip when the machine cannot provide it (not root,
// tools missing), unless BTRFS_VDO_REQUIRE_BTRFS=1 is set, as CI does:
// then they fail, so a skipped test can never pass for a real one.
package btrfstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/loopdev"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "BTRFS_VDO_REQUIRE_BTRFS"

// DefaultSize is the image size Mount uses for size <= 0. mkfs.btrfs needs
// a bit over 100 MiB for a default single-device filesystem.
const DefaultSize = 512 << 20

// unmountTries and unmountPause bound how long cleanup waits for a busy
// mount (a file still open in a leaked goroutine, say) before detaching it
// lazily.
const (
	unmountTries = 10
	unmountPause = 100 * time.Millisecond
)

// The kernel detaches an autoclear loop device at the last close of the
// device, not at unmount: whatever still has it open (a block device
// probe, a mount namespace copied while the filesystem was mounted) delays
// the detach, by seconds on a loaded machine. Cleanup polls for it, from
// loopPollFirst doubling up to loopPollMax, for at most loopReleaseWait
// before it reports a leaked device, and logs a wait over loopSlowRelease.
const (
	loopReleaseWait = 30 * time.Second
	loopPollFirst   = 10 * time.Millisecond
	loopPollMax     = 500 * time.Millisecond
	loopSlowRelease = time.Second
)

// unavailable skips t, or fails it when RequireEnv is set.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1 requires these tests to run", msg, RequireEnv)
		return
	}
	t.Skip(msg)
}

// RequireRoot skips t (or fails it, see RequireEnv) unless running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "test needs root")
	}
}

// RequireCommands skips t (or fails it, see RequireEnv) unless every named
// program is in PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			unavailable(t, "test needs %s: %v", name, err)
		}
	}
}

// Mount makes a btrfs of the given size (DefaultSize if size <= 0) on a
// loop device and returns its mount point, a fresh directory. opts are
// extra mount options such as "compress=zstd". Cleanup unmounts it, checks
// that the loop device went away, and deletes the image.
func Mount(t testing.TB, size int64, opts ...string) string {
	t.Helper()
	RequireRoot(t)
	RequireCommands(t, "mkfs.btrfs", "mount")
	if size <= 0 {
		size = DefaultSize
	}

	img := makeImage(t, size)
	run(t, "mkfs.btrfs", "-q", "-f", img)

	mnt := t.TempDir()
	mountOpts := strings.Join(append([]string{"loop"}, opts...), ",")
	// mount -o loop sets up the loop device with autoclear, so the kernel
	// detaches it when the filesystem is released.
	run(t, "mount", "-t", "btrfs", "-o", mountOpts, img, mnt)
	t.Cleanup(func() {
		unmount(t, mnt)
		waitLoopReleased(t, img)
	})
	return mnt
}

// Tmpfs mounts a small tmpfs on a fresh directory and returns it: a
// filesystem that is certainly not btrfs and has no reflink support, for
// testing the fallbacks.
func Tmpfs(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	return mnt
}

// makeImage creates a sparse file of size bytes outside the test's temp
// dir (which will hold the mount point) and removes it at cleanup.
func makeImage(t testing.TB, size int64) string {
	t.Helper()
	f, err := os.CreateTemp("", "btrfstest-*.img")
	if err != nil {
		t.Fatalf("create image: %v", err)
	}
	name := f.Name()
	t.Cleanup(func() {
		if err := os.Remove(name); err != nil {
			t.Errorf("remove image: %v", err)
		}
	})
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("size image %s: %v", name, err)
	}
	return name
}

// run runs a command and fails t with its output if it fails.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// unmount unmounts mnt, retrying while it is busy, and falls back to a
// lazy unmount so the test run is not left with a stuck mount.
func unmount(t testing.TB, mnt string) {
	t.Helper()
	var err error
	for range unmountTries {
		err = unix.Unmount(mnt, 0)
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(unmountPause)
	}
	if errors.Is(err, unix.EBUSY) {
		t.Errorf("unmount %s: still busy, detaching lazily", mnt)
		err = unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if err != nil {
		t.Errorf("unmount %s: %v", mnt, err)
	}
}

// waitLoopReleased waits until no loop device is backed by img, and fails
// t if one stays: that would be a leaked loop device.
func waitLoopReleased(t testing.TB, img string) {
	t.Helper()
	start := time.Now()
	pause := loopPollFirst
	for {
		devs, err := loopdev.BackedBy(img)
		if err != nil {
			t.Errorf("check loop devices of %s: %v", img, err)
			return
		}
		waited := time.Since(start)
		if len(devs) == 0 {
			if waited > loopSlowRelease {
				t.Logf("loop device of %s detached %s after unmount", img, waited.Round(time.Millisecond))
			}
			return
		}
		if waited > loopReleaseWait {
			t.Errorf("loop devices %v still backed by %s %s after unmount", devs, img, waited.Round(time.Millisecond))
			return
		}
		time.Sleep(pause)
		pause = min(2*pause, loopPollMax)
	}
}

// Reflink makes dst a reflinked copy of src with src's timestamps, as
// Qubes' file-reflink driver leaves revisions and precaches.
func Reflink(t testing.TB, src, dst string) {
	t.Helper()
	out, err := exec.Command("cp", "--reflink=always", "--preserve=timestamps", src, dst).CombinedOutput()
	if err != nil {
		t.Fatalf("reflink %s to %s: %v: %s", src, dst, err, out)
	}
}

// Sync commits the transaction of the btrfs holding path, so that extent
// reference counts and back references are current.
func Sync(t testing.TB, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := btrfs.Sync(f); err != nil {
		t.Fatal(err)
	}
}

// Extents lists the extent items of the file at path, all generations.
func Extents(t testing.TB, path string) []btrfs.Extent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exts, err := btrfs.Extents(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	return exts
}
