// SPDX-License-Identifier: GPL-2.0-or-later

// Package dedupindex is the pool-wide dedup index: a fixed-size, lossy table
// from the hash of a 4 KiB block to where btrfs stores a block with that
// content, modelled on bees' hash table.
//
// The index is only a hint. Data is changed only through FIDEDUPERANGE, and
// the kernel compares the bytes before sharing them, so a stale, lost or
// torn index costs time (a failed dedupe, a missed match), never data. That
// is why a corrupt file is simply set aside and a fresh index started.
//
// Nouns:
//
//   - Block: 4 KiB of file data at a 4 KiB-aligned offset, the unit hashed
//     and deduplicated (btrfs's sectorsize).
//   - Hash: the 64-bit xxhash of a block's bytes (HashBlock).
//   - Address: the btrfs logical byte address of a block, as in an extent
//     item's disk_bytenr plus the block's offset into the extent. It is
//     stable across reflinks and revisions, unlike inode and offset, and is
//     resolved to files by the caller. A block of a compressed extent has
//     no logical address of its own: its address is the extent's with the
//     block's number above BlockShift (BlockAddr, SplitAddr). Addresses are
//     4 KiB-aligned, so the low 12 bits of a stored address hold the
//     cell's flags.
//   - Cell: 16 bytes, one hash and one address with flags. An all-zero
//     cell is empty.
//   - Bucket: 4 KiB, 256 cells. A hash lives in bucket hash % nbuckets.
//     A bucket's stored cells are packed at its front in LRU order: the
//     front is the most recently used cell, the tail the next to go.
//   - Useful: a cell's flag meaning its address has produced a dedup. When
//     a full bucket needs room, useful cells at the tail get a second
//     chance (moved to the front, flag cleared) and the last cell that is
//     not useful is evicted.
//   - Dirty: a bucket changed since it was last written; WriteDirty writes
//     only those.
//   - Stripe: one lock and its counters, shared by every bucket whose index
//     is congruent to the stripe's modulo the stripe count. Operations on
//     buckets of different stripes run in parallel.
//
// Index itself does no file I/O: it is written and read through
// io.Writer, io.WriterAt and io.Reader. File keeps an index in a file under
// the pool.
package dedupindex
