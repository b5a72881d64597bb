// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/loopdev"
)

// journalBytes is the ext4 journal size for an image: the smallest
// mke2fs allows for small images, 16 MiB (its own default up to 1 GiB)
// otherwise, so tiny test images keep room for files.
func journalBytes(size int64) int64 {
	if size < 128<<20 {
		return 4 << 20
	}
	return 16 << 20
}

// inodeBytes is what one inode costs in the inode table (mke2fs default).
const inodeBytes = 256

// loopReleaseWait bounds the wait for the kernel to detach an autoclear
// loop device after unmount: it does at the device's last close, which
// whatever else has it open delays, by seconds on a loaded machine.
const loopReleaseWait = 30 * time.Second

// mkfsExt4 makes img, of size bytes, an ext4 filesystem holding the tree
// stage, with 4 KiB blocks (as on a real template, and so that the same
// file lands on the same 4 KiB boundaries in every image) and room for
// inodes files. uuid fixes the filesystem and directory-hash identity so
// the same seed gives the same layout.
func mkfsExt4(ctx context.Context, img, stage string, size int64, inodes int, uuid string) error {
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create image %s: %w", img, err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size image %s: %w", img, err)
	}
	return run(ctx, "mkfs.ext4", "-q", "-b", "4096", "-N", strconv.Itoa(inodes),
		"-J", "size="+strconv.FormatInt(journalBytes(size)>>20, 10),
		"-U", uuid, "-E", "hash_seed="+uuid, "-d", stage, img)
}

// mountImage mounts the ext4 image img on mnt through a loop device and
// returns a function that unmounts it and waits until the loop device is
// gone, so the image is quiet when it returns.
func mountImage(ctx context.Context, img, mnt string) (unmount func() error, err error) {
	// noatime: listing the tree to pick files would otherwise rewrite the
	// inode of every directory, which is not part of an update.
	if err := run(ctx, "mount", "-t", "ext4", "-o", "loop,noatime", img, mnt); err != nil {
		return nil, err
	}
	return func() error {
		// Not ctx: an interrupted run must still unmount.
		if err := run(context.Background(), "umount", mnt); err != nil {
			return err
		}
		return waitLoopReleased(img)
	}, nil
}

// waitLoopReleased waits until no loop device is backed by img.
func waitLoopReleased(img string) error {
	deadline := time.Now().Add(loopReleaseWait)
	for {
		devs, err := loopdev.BackedBy(img)
		if err != nil {
			return fmt.Errorf("check loop devices of %s: %w", img, err)
		}
		if len(devs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loop devices %v still backed by %s after unmount", devs, img)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs a command, returning its output in the error when it fails.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
