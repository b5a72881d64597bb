// SPDX-License-Identifier: GPL-2.0-or-later

// Package optimizer compresses and deduplicates what VMs wrote, when their
// volumes commit, without unsharing anything Qubes' revisions share.
//
// Nouns:
//   - A job is the pending work on one volume (Job): queued by a commit or
//     by the optimize command, kept in the pool's state.json until done,
//     held while the volume runs, merged with later requests.
//   - The Scheduler runs jobs on its workers, one volume at a time, pauses
//     them (battery) and yields to a VM start at the next chunk.
//   - A Pool is the optimizer's side of one pool: its jobs' state, its
//     dedup index (dedupindex, under StateDir) and its usage figures
//     (usage.json, read by qvm-pool info).
//   - A plan is the work a job finds in each file (fileWork): the extents
//     written since the volume started, or every uncompressed one for a
//     full pass, cut into chunks (workItem) of at most chunkBytes.
//   - A job run (jobRun) is one job's pass, from plan to settle: the job,
//     its pool, the encoder, the dedup stage with the pool's index, the
//     ledger and the result with its counters (counters.go).
//   - The replace pass is the dedup stage (deduper): in the clean image's
//     new extents, every block found elsewhere, zero, or compressible is
//     replaced by a dedupe, a hole or a compressed copy, so that the
//     extent is freed whole. An extent plan (extentPlan) says, for each
//     extent of a segment of new data, which of its pieces (piece) match,
//     are zero, or stay; a span (diskSpan) is a disk extent the pass may
//     still free.
//   - A copy rewrite (copyRewrite) writes data to a compressed copy and
//     deduplicates it into every reference, so that nothing is unshared:
//     the compression stage for the extents the volume's own files share
//     (compressShared), the dedup stage for the rests of the image's
//     extents (rewriteRests). What only one file references is rewritten
//     by range defrag (internal/compress).
//   - The ledger of a job is what it replaced and made, by disk extent;
//     its settle reads it back after the transaction commits to tell the
//     space really freed (Result.DiskBefore, DiskAfter).
//   - A cold pass (a Job with Cold set; cold*.go) recompresses at the
//     cold level what stayed unchanged long enough (ColdPolicy), through
//     copy rewrites deduplicated into every file of the pool that holds
//     the data. It runs only when no other job waits, and gives way to
//     any job and to a start in its pool.
//   - The tunables are in tunables.go, each with what it trades.
//
// The pipeline of one job (Scheduler.runJob, jobRun.execute):
//
//	plan → replace pass (the clean image) → compress the rest (the
//	revisions) → precache → settle
//
// Lock order: a volume's lock (volume.Store.Locked, held by a start, a
// commit and each chunk of a job), then the Scheduler's mutex, then a
// Pool's state store or dedup index. Nothing holding the Scheduler's
// mutex takes a volume's lock.
package optimizer
