// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// runPrefixEnv, set by make for each run, and defaultRunPrefix put every
// file, mount and socket where tests/cleanup finds what an interrupted
// run left, as for the other tests and benchmarks.
const (
	runPrefixEnv     = "BTRFS_VDO_RUN_PREFIX"
	defaultRunPrefix = "btrfs-vdo-"
)

// Env is the benchmark's working directory and what must be undone on exit.
type Env struct {
	dir      string
	keep     bool
	cleanups []cleanup
}

type cleanup struct {
	name   string
	always bool // undone even with -keep (daemons, not filesystems)
	fn     func() error
}

// New makes the work directory under /var/tmp, named after the run prefix.
func New(keep bool) (*Env, error) {
	prefix := os.Getenv(runPrefixEnv)
	if prefix == "" {
		prefix = defaultRunPrefix
	}
	dir, err := os.MkdirTemp("/var/tmp", prefix+"bench-")
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	return &Env{dir: dir, keep: keep}, nil
}

// Dir is the directory holding the run's files.
func (e *Env) Dir() string { return e.dir }

// onClose registers fn to run at close, last registered first.
func (e *Env) onClose(name string, always bool, fn func() error) {
	e.cleanups = append(e.cleanups, cleanup{name, always, fn})
}

// Close undoes everything, or with keep only stops processes and says
// where the filesystems are.
func (e *Env) Close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		c := e.cleanups[i]
		if e.keep && !c.always {
			continue
		}
		if err := c.fn(); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %s: %v\n", c.name, err)
		}
	}
	if e.keep {
		fmt.Fprintf(os.Stderr, "kept %s (mounted); undo with tests/cleanup\n", e.dir)
		return
	}
	if err := os.RemoveAll(e.dir); err != nil {
		fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
	}
}

// MountBtrfs makes a sparse image of size bytes, formats it btrfs and
// mounts it (mount -o loop, so the loop device goes with the unmount).
func (e *Env) MountBtrfs(ctx context.Context, name string, size int64) (string, error) {
	img := filepath.Join(e.dir, name+".img")
	mnt := filepath.Join(e.dir, name)
	f, err := os.Create(img)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", img, err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("size %s: %w", img, err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return "", fmt.Errorf("create mount point: %w", err)
	}
	if err := Run(ctx, "mkfs.btrfs", "-q", "-f", img); err != nil {
		return "", err
	}
	if err := Run(ctx, "mount", "-t", "btrfs", "-o", "loop", img, mnt); err != nil {
		return "", err
	}
	e.onClose("unmount "+mnt, false, func() error { return unmount(mnt) })
	return mnt, nil
}

// unmount retries while mnt is busy, then detaches it lazily.
func unmount(mnt string) error {
	var err error
	for range 50 {
		if err = unix.Unmount(mnt, 0); !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
}

var started = time.Now()

// Logf reports progress on stderr, so stdout holds only the table.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}

// Run runs a command, returning its output in the error when it fails.
func Run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs a command and returns its standard output.
func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
