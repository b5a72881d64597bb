// SPDX-License-Identifier: GPL-2.0-or-later

// Package benchenv is what the benchmarks run as root share: a work
// directory under /var/tmp with loop-mounted btrfs filesystems undone on
// exit, a btrfs-vdod on a socket of its own and its jobs, or a pool run
// in the benchmark's process (InProcess), per-process CPU, read and
// memory figures, and the space and sharing measures of a corpus
// (bench/corpus).
package benchenv
