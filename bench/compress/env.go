package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// env is the benchmark's working directory and what must be undone on exit.
type env struct {
	dir      string
	keep     bool
	cleanups []cleanup
}

type cleanup struct {
	name   string
	always bool // undone even with -keep (daemons, not filesystems)
	fn     func() error
}

func newEnv(keep bool) (*env, error) {
	prefix := os.Getenv(runPrefixEnv)
	if prefix == "" {
		prefix = defaultRunPrefix
	}
	dir, err := os.MkdirTemp("/var/tmp", prefix+"bench-")
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	return &env{dir: dir, keep: keep}, nil
}

// onClose registers fn to run at close, last registered first.
func (e *env) onClose(name string, always bool, fn func() error) {
	e.cleanups = append(e.cleanups, cleanup{name, always, fn})
}

// close undoes everything, or with keep only stops processes and says
// where the filesystems are.
func (e *env) close() {
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

// mountBtrfs makes a sparse image of size bytes, formats it btrfs and
// mounts it (mount -o loop, so the loop device goes with the unmount).
func (e *env) mountBtrfs(ctx context.Context, name string, size int64) (string, error) {
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
	if err := run(ctx, "mkfs.btrfs", "-q", "-f", img); err != nil {
		return "", err
	}
	if err := run(ctx, "mount", "-t", "btrfs", "-o", "loop", img, mnt); err != nil {
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

// run runs a command, returning its output in the error when it fails.
func run(ctx context.Context, name string, args ...string) error {
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

// clockTicks is USER_HZ, the unit of /proc CPU times; 100 on every
// architecture Linux exports it for.
const clockTicks = 100

// machineCPU is the busy CPU time of the whole machine so far (/proc/stat):
// it includes the kernel threads that compress data during writeback,
// which no process's time shows.
func machineCPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read CPU times: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("read CPU times: unexpected /proc/stat line %q", line)
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle, iowait.
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU times: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// processCPU is the user and system time of process pid and its reaped
// children (/proc/PID/stat fields 14–17).
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	// The command name may hold spaces; the fields after it do not.
	rest := string(data[strings.LastIndexByte(string(data), ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 15 {
		return 0, fmt.Errorf("read CPU time of process %d: short stat line", pid)
	}
	var ticks int64
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// childrenCPU is the user and system time of this process's reaped
// children: commands run by the benchmark (defragment, the CLI).
func childrenCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &ru); err != nil {
		return 0, fmt.Errorf("read CPU time of child processes: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
