// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LoopMount is a btrfs filesystem on a loop device the benchmark set up
// itself, so that it can choose the device's mode and read its counters.
type LoopMount struct {
	Dir    string // the mount point
	Device string // /dev/loopN
}

// MountBtrfsDirectIO makes a sparse image of size bytes, formats it btrfs,
// attaches it to a loop device in direct-I/O mode (its reads bypass the
// host's page cache, so each one reaches the disk) and mounts it with the
// mount options opts ("" for none).
func (e *Env) MountBtrfsDirectIO(ctx context.Context, name string, size int64, opts string) (LoopMount, error) {
	img := filepath.Join(e.dir, name+".img")
	m := LoopMount{Dir: filepath.Join(e.dir, name)}
	if err := sparseFile(img, size); err != nil {
		return m, err
	}
	if err := os.Mkdir(m.Dir, 0o755); err != nil {
		return m, fmt.Errorf("create mount point: %w", err)
	}
	if err := Run(ctx, "mkfs.btrfs", "-q", "-f", img); err != nil {
		return m, err
	}
	out, err := output(ctx, "losetup", "--find", "--show", "--direct-io=on", img)
	if err != nil {
		return m, err
	}
	m.Device = strings.TrimSpace(string(out))
	e.onClose("detach "+m.Device, false, func() error { return Run(context.Background(), "losetup", "-d", m.Device) })
	if dio, err := readSysNumber(m.Device, "loop/dio"); err != nil || dio != 1 {
		return m, fmt.Errorf("%s: direct I/O not in effect (dio %d, %v)", m.Device, dio, err)
	}
	args := []string{"-t", "btrfs"}
	if opts != "" {
		args = append(args, "-o", opts)
	}
	if err := Run(ctx, "mount", append(args, m.Device, m.Dir)...); err != nil {
		return m, err
	}
	e.onClose("unmount "+m.Dir, false, func() error { return unmount(m.Dir) })
	return m, nil
}

// SectorsRead is how many 512-byte sectors the device has read so far
// (field 3 of /sys/block/NAME/stat).
func (m LoopMount) SectorsRead() (int64, error) {
	path := filepath.Join("/sys/block", filepath.Base(m.Device), "stat")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return 0, fmt.Errorf("read %s: short line %q", path, data)
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

// readSysNumber reads the number in /sys/block/NAME/attr for device dev.
func readSysNumber(dev, attr string) (int64, error) {
	path := filepath.Join("/sys/block", filepath.Base(dev), attr)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

// sparseFile creates path as a sparse file of size bytes.
func sparseFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size %s: %w", path, err)
	}
	return nil
}
