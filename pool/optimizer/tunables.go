// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import "time"

// The optimizer's tunables, each with what it trades. Limits of formats
// (block and file sizes the kernel or a file's layout fixes) stay with
// the code that reads them, and the dedup index sizes itself
// (dedupindex.DefaultSize).

// Scheduling: how long a VM start can wait, and what jobs keeps.
const (
	// chunkBytes bounds the work done under a volume's lock at a time, and
	// so how long a VM start can wait for the optimizer. bench/start, 200
	// starts during a job at load 6 on two cores: the job's steps under
	// the lock took 2.1 ms at p90 and 8.3 ms at p99 with 512 KiB, 6.7 and
	// 16.3 ms with 2 MiB, and a start's wait for the lock 7.7 ms at p99
	// instead of 24.5 ms; the jobs took no longer.
	chunkBytes = 512 << 10
	// recentJobs is how many finished jobs Recent remembers.
	recentJobs = 64
)

// Commits: when a plan may take a commit another job made.
const (
	// ctimeSlack is how long after a file's change time a commit must have
	// begun to cover the change: the kernel takes file times from a coarse
	// clock, up to a tick (at most 10 ms) behind, and writes within the
	// same tick leave the time as it was.
	ctimeSlack = 50 * time.Millisecond
)

// Compression: how copies are written. What is judged compressible
// (sample size, DefaultMinSaving) and the range defrag's retries are
// internal/compress's.
const (
	// copyBuffer is the read size when writing a compressed copy.
	copyBuffer = 1 << 20
)

// Cold pass: what a copy of an uncompressed extent may hold.
const (
	// maxColdPlainCopy bounds the referenced part of an uncompressed
	// extent a cold pass copies to free the rest, read into memory at once
	// to be indexed.
	maxColdPlainCopy = 8 << 20
	// coldMinElsewhereRun is the fewest blocks of a run another extent
	// holds that a cold pass moves there (runsElsewhere): a run read
	// alone decompresses the whole extent it then lies in. On bench/read's
	// corpus (scale 0.25), after the cold pass, the debian-12-xfce root
	// read sequentially took 72.9, 58.9, 47.6 and 37.6 MiB from disk at
	// 1, 2, 4 and 8 blocks (32.3 before the pass, 35.0 on a compress=zstd
	// mount), and the pool 0.91, 0.92, 0.94 and 0.97 times the ideal
	// bound (1.02 before).
	coldMinElsewhereRun = 4
)

// Dedup: memory and reads a pass spends to find matches.
const (
	// keepIdleIndex is how long a pool's dedup index stays in memory
	// after its last job, its file closed: VMs stopping a few minutes
	// apart find it ready, where reading it again would cost each job
	// the whole index file (128 MiB per TB of images) from disk. Past
	// that, the memory goes back to dom0.
	keepIdleIndex = 10 * time.Minute
	// readAheadBatches is how many batches the first walk asks the kernel to
	// read ahead of the one it reads: the new data lies scattered over the
	// image, and reading it one piece at a time would wait on each.
	readAheadBatches = 4
	// maxLocalBlocks bounds the job's table of its own new blocks, which finds
	// data repeated within what the job covers before any of it is indexed:
	// about 5 MiB of memory for 1 GiB of new data; past that, repeats are
	// found only by later jobs, through the index.
	maxLocalBlocks = 1 << 18
	// The windows runLength reads a source in: a few blocks first, doubling
	// up to maxWindow.
	firstWindow = 4 * blockSize
	maxWindow   = 1 << 20
	// A deduplicated image reads its shared data where its source's extents
	// lie, and btrfs reads and decompresses a compressed extent whole for any
	// read of it: an image referencing a short piece of a compressed extent
	// pays the whole extent's read for that piece. A template root matched
	// against many short pieces of its source's 128 KiB extents read three
	// times what a compress=zstd mount reads. So a run is shared into a
	// compressed source extent only where it covers at least
	// minSourceSharePercent of that extent's data; the rest of the run stays the image's own
	// and is rewritten compressed with the rest of its extent, giving up the
	// space the match would have saved. An uncompressed source extent is read
	// a sector at a time, so a run of any length is shared into it.
	//
	// The share trades reads for space. On bench/read's corpus (scale 0.25),
	// template roots read sequentially took 25.1 and 32.3 MiB from disk at
	// 50 % (a compress=zstd mount: 24.6 and 31.9) but the pool took 1.06
	// times the ideal bound, over its 1.05; at 40 %, 26.4 and 33.7 MiB in
	// 1.03 times; at 25 %, 0.98 times but 36.5 and 45.7 MiB (measured before
	// rests were written a range at a time, which saves 4 to 5 MiB of these).
	// bees asks half.
	minSourceSharePercent = 40
)

// segmentBytes bounds the new data one segment of a pass covers. A segment
// holds the hashes of the blocks it may keep until its end (16 bytes per
// 4 KiB): cut into segments, a pass over a large image holds about 4 MiB
// of them at a time instead of 4 MiB per GiB of image. A commit's new data
// usually makes one segment. A variable, so that tests can cut a pass
// into several.
var segmentBytes uint64 = 1 << 30

// State and usage figures: how writes and measurements are batched.
const (
	// stateWriteDelay is how long a change that may be lost in a crash waits
	// to be written, so that a burst of them (an optimize of many volumes)
	// costs one write.
	stateWriteDelay = 100 * time.Millisecond
	// usageDelay gathers the refreshes asked for in a burst (the removal of a
	// VM's volumes) into one.
	usageDelay = time.Second
	// Measuring costs about 7 µs per extent (1.4 s for 200000). Once it takes
	// more than usageCheap, the pool is measured at most once per usageShare
	// times that long, so that on a large pool measuring takes at most 1/20 of
	// the time; a job ending sooner leaves it to a later measurement.
	usageCheap = 100 * time.Millisecond
	usageShare = 20
)
