// SPDX-License-Identifier: GPL-2.0-or-later

// Package benchenv is what the benchmarks run as root (bench/compress,
// bench/dedup) share: a work directory under /var/tmp with loop-mounted
// btrfs filesystems undone on exit, a btrfs-vdod on a socket of its own
// and its jobs, per-process CPU, read and memory figures, and the space
// and sharing measures of a corpus (bench/corpus).
package benchenv
