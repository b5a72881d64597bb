// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

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

// ChildrenCPU is the user and system time of this process's reaped
// children: commands run by the benchmark (defragment, duperemove, the CLI).
func ChildrenCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &ru); err != nil {
		return 0, fmt.Errorf("read CPU time of child processes: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// ReadBytes is how many bytes process pid has caused to be read from
// storage so far (/proc/PID/io read_bytes): page-cache hits are not counted.
func ReadBytes(pid int) (int64, error) {
	return procField(fmt.Sprintf("/proc/%d/io", pid), "read_bytes:", 1)
}

// PeakRSS is the peak resident set size of process pid (VmHWM) since it
// started or since ResetPeakRSS.
func PeakRSS(pid int) (int64, error) {
	return procField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:", 1024)
}

// ResetPeakRSS starts a new peak for PeakRSS, so each pass has its own.
func ResetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of process %d: %w", pid, err)
	}
	return nil
}

// procField reads the number after key in a /proc file of "key value"
// lines, times unit.
func procField(path, key string, unit int64) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read %s: %s: %w", path, key, err)
			}
			return n * unit, nil
		}
	}
	return 0, fmt.Errorf("read %s: no %s line", path, key)
}
