// SPDX-License-Identifier: GPL-2.0-or-later

package compress

import (
	"fmt"
	"runtime"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/ioprio"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
)

// What the CLI's compress command needs around Files, so that it reaches
// the filesystem through this package alone.

// Usage is the disk space a set of files takes, as compsize reports it.
type Usage = usage.Report

// UsageRow is one row of a Usage: one compression type, or the total.
type UsageRow = usage.Row

// Measure measures the usage of the files at paths (directories stand for
// every file below them).
func Measure(paths []string) (Usage, error) {
	return usage.Measure(paths)
}

// CheckOnBtrfs refuses a path on another filesystem, as compsize does.
func CheckOnBtrfs(paths []string) error {
	for _, p := range paths {
		ok, err := btrfs.IsBtrfs(p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: not on btrfs", p)
		}
	}
	return nil
}

// LowerIOPriority gives the calling goroutine the idle I/O class, so that
// compressing yields the disk to everything else. The priority belongs to
// a thread: the goroutine is locked to its thread for good.
func LowerIOPriority() error {
	runtime.LockOSThread()
	return ioprio.SetIdle()
}
