// SPDX-License-Identifier: GPL-2.0-or-later

// Package loopdev finds the loop devices backed by a file and tells them
// when the file has grown. Qubes attaches VM images through loop devices;
// after an image is resized, the loop device keeps its old size until its
// capacity is refreshed.
package loopdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sysBlock is where the kernel lists block devices; a bound loop device
// has a loop/backing_file attribute there.
const sysBlock = "/sys/block"

// BackedBy returns the loop devices (/dev/loopN, in numeric order) whose
// backing file is path.
//
// The kernel prints the backing file as the absolute path with symlinks
// resolved, so path is resolved the same way before comparing. A device
// whose backing file was deleted or replaced (the kernel adds
// " (deleted)") is not backed by the file now at path and does not match.
// The comparison is textual: a device attached through a bind mount shows
// the path under that mount.
func BackedBy(path string) ([]string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("find loop devices of %s: %w", path, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("find loop devices of %s: %w", path, err)
	}
	names, err := filepath.Glob(filepath.Join(sysBlock, "loop*"))
	if err != nil {
		return nil, fmt.Errorf("find loop devices of %s: %w", path, err)
	}
	var devs []string
	for _, dir := range names {
		data, err := os.ReadFile(filepath.Join(dir, "loop", "backing_file"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
			continue // not bound to a file, or being detached as we read
		}
		if err != nil {
			return nil, fmt.Errorf("find loop devices of %s: %w", path, err)
		}
		if string(data) == resolved+"\n" {
			devs = append(devs, "/dev/"+filepath.Base(dir))
		}
	}
	slices.SortFunc(devs, func(a, b string) int { return loopNumber(a) - loopNumber(b) })
	return devs, nil
}

// loopNumber is N in /dev/loopN, for sorting.
func loopNumber(dev string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(dev, "/dev/loop"))
	return n
}

// RefreshCapacity makes every loop device backed by path re-read the
// file's size (LOOP_SET_CAPACITY), as `losetup --set-capacity` does, and
// returns how many it refreshed. It tries every device and reports all
// failures, each naming its device. Needs CAP_SYS_ADMIN.
func RefreshCapacity(path string) (int, error) {
	devs, err := BackedBy(path)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, dev := range devs {
		if err := setCapacity(dev); err != nil {
			errs = append(errs, fmt.Errorf("refresh capacity of %s (backed by %s): %w", dev, path, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// setCapacity issues LOOP_SET_CAPACITY on dev. A read-only open is enough
// for CAP_SYS_ADMIN and works for read-only loop devices too.
func setCapacity(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0)
}
