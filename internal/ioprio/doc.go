// SPDX-License-Identifier: GPL-2.0-or-later

// Package ioprio sets the I/O scheduling priority of the calling thread
// (ioprio_set(2)), so background work such as compression and
// deduplication yields the disk to running VMs.
//
// The priority belongs to a thread, not to the process, and Go moves
// goroutines between threads. A goroutine must therefore call
// runtime.LockOSThread before SetIdle or SetBestEffort and never unlock:
// when it returns still locked, the runtime ends the thread, so the
// priority cannot leak to other goroutines. The runtime never starts new
// threads from a locked thread, so they do not inherit it either.
//
// The priority applies to I/O the thread submits itself: reads (including
// the kernel's byte comparison during a dedupe) and direct writes.
// Buffered writes are written back later by kernel threads and do not
// carry it. Only schedulers that honor priorities (BFQ, and mq-deadline
// for the classes) act on it; with "none" it has no effect.
package ioprio
