// SPDX-License-Identifier: GPL-2.0-or-later

package ioprio

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Scheduling classes (include/uapi/linux/ioprio.h).
const (
	ClassNone       = 0 // no priority set: derived from the CPU nice value
	ClassRealtime   = 1
	ClassBestEffort = 2
	ClassIdle       = 3 // served only when no other I/O is waiting
)

// Encoding of a priority value: class in the top bits, level below.
const (
	classShift = 13
	levelMask  = 1<<classShift - 1
	// Best-effort and realtime levels run from 0 (highest) to 7.
	maxLevel = 7
)

// whoProcess with who=0 addresses the calling thread (IOPRIO_WHO_PROCESS).
const whoProcess = 1

// SetIdle gives the calling thread the idle class. See the package doc:
// lock the goroutine to its thread first.
func SetIdle() error {
	return set(ClassIdle, 0)
}

// SetBestEffort gives the calling thread the best-effort class at level
// (0 highest, 7 lowest; the default for a nice 0 process is 4). See the
// package doc: lock the goroutine to its thread first.
func SetBestEffort(level int) error {
	if level < 0 || level > maxLevel {
		return fmt.Errorf("set best-effort I/O priority level %d: want 0..%d: %w", level, maxLevel, unix.EINVAL)
	}
	return set(ClassBestEffort, level)
}

// Get returns the calling thread's class and level. A thread that never
// set a priority reports ClassNone (some kernel versions report instead
// the best-effort level they derive from the nice value).
func Get() (class, level int, err error) {
	prio, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, whoProcess, 0, 0)
	if errno != 0 {
		return 0, 0, fmt.Errorf("get I/O priority of this thread: %w", errno)
	}
	return int(prio) >> classShift, int(prio) & levelMask, nil
}

func set(class, level int) error {
	prio := class<<classShift | level
	if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, whoProcess, 0, uintptr(prio)); errno != 0 {
		return fmt.Errorf("set I/O priority of this thread to class %d level %d: %w", class, level, errno)
	}
	return nil
}
