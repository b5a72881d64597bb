// SPDX-License-Identifier: GPL-2.0-or-later

// Command read measures how fast VM images read back from a pool that
// btrfs-vdo optimized, against the same corpus (see bench/corpus) stored
// raw and written through a compress=zstd mount. Each copy lives on its
// own loop-mounted btrfs whose loop device is in direct-I/O mode, so that
// reads reach the disk and the loop device counts them:
//
//  1. raw: the corpus as built, no compression;
//  2. compress=zstd: the corpus written through a compress=zstd mount;
//  3. btrfs-vdo: the corpus as built, then optimize --full;
//  4. the same, then optimize --cold: what the cold pass costs reads, for
//     information.
//
// With the page cache dropped before each read, it reads each template
// root sequentially and makes seeded random 4 KiB reads of two template
// roots and of an AppVM private, three times each, and reports the median
// and the spread. Reads go through the page cache of the image file, as
// the loop device Qubes attaches an image with does (buffered, without
// direct I/O), one request at a time. It prints the figures, each image's
// extent layout and the space each copy takes against the corpus's ideal
// bound, with the targets: btrfs-vdo at least as fast as the
// compress=zstd mount on every read, in at most 1.05 times the ideal
// bound.
//
// Run as root (needs btrfs-progs, e2fsprogs, util-linux and compsize):
//
//	make bench-read BENCH_ARGS="-scale 0.25"
package main

import (
	"flag"

	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

var randomReads = flag.Int("reads", 3000, "random 4 KiB reads of each image read at random")

func main() {
	benchenv.Main("bench/read", run)
}
