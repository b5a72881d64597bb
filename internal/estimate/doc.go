// SPDX-License-Identifier: GPL-2.0-or-later

// Package estimate tells, without changing anything, what a full
// optimization ("btrfs-vdo optimize --full") would save in a pool
// directory laid out as file-reflink lays it out: per VM and for the pool,
// the space after compression alone and after zero blocks, duplicates and
// compression. It reads image files and btrfs metadata only: files are
// opened read-only with O_NOATIME, and nothing is written anywhere. It
// does not import the optimizer; it models it.
//
// # Nouns
//
//   - Pool file: a regular file in DIR/vm-templates/<vm>/ or
//     DIR/appvms/<vm>/: an image, a precache, a revision, or another file
//     (dirty or import image, temp file). VMs are visited templates first,
//     as a full optimization visits them.
//   - Data extent: as in internal/btrfs, counted once however many files
//     and ranges share it (by its logical address), and attributed to the
//     first VM visited that references it. Its live bytes are the union of
//     the ranges the files reference; its disk bytes what it takes now.
//   - Class: what a full optimization does to an extent. Taken apart
//     (classDedup: an extent of an image, precache or revision held by no
//     one else): zero blocks and preallocated ranges become holes, blocks
//     found elsewhere are shared, the rest is compressed. Compressed only
//     (classCompress: only revisions hold it). Left in place but a source
//     of duplicates (classSource: an image's extent something else holds
//     too). Left in place (classKept: already compressed, no-COW, or held
//     only by dirty images).
//   - Written and preallocated ranges: an extent reserved by fallocate
//     and partly written since is referenced by both; only the written
//     ones hold data (and checksums).
//   - Block: 4 KiB of an extent; its key is its data checksum as btrfs
//     stores it in the checksum tree (CRC-32C by default).
//   - Unit: at most 128 KiB of an extent's live bytes, the piece btrfs
//     compresses as one extent, and the unit sampled.
//
// # Method
//
// Metadata first: the extent items of every pool file (a tree search per
// file) and each extent's reference count (one walk of the extent tree
// over the address ranges the pool's extents lie in), which gives the
// logical and disk bytes exactly, as compsize would, and the classes.
//
// Deduplication is counted from checksums, never from data: a sweep of
// the checksum tree over the pool's extents yields the key of every live
// block, about 4 bytes of metadata per 4 KiB. Zero blocks (the key of a
// zero block) are counted exactly; with BLAKE2b checksums, whose key of a
// zero block this package does not compute, they are counted among the
// duplicates instead. Duplicates are counted on a content
// sample: a block is kept iff its mixed key falls below a threshold, so
// all copies of a content are kept or dropped together, and the kept
// groups are counted exactly (in visiting order: the first copy stays,
// the later ones are duplicates; none stays where a copy lies in an
// extent left in place) and scaled by the sample's rate, with the
// Horvitz-Thompson variance. The rate is 1 (every block) up to
// Options.MaxEntries blocks, 4 Mi by default: 16 GiB of pool; beyond, the
// rate shrinks so that memory stays at 64 MiB. Since keys are short,
// unequal blocks can share one: a random sample of the duplicate pairs is
// read back and compared, and the duplicates are scaled by the share
// found equal.
//
// Compression is measured on a sample: units are drawn at random without
// replacement (seeded), as many as hold Options.SampleBytes at the units'
// mean size, read, and compressed with zstd at the pool's
// level as the optimizer would write them: a unit with neither zero
// blocks nor duplicates keeps its size unless its frame saves a sector
// and takes at most 90% of it; otherwise its remaining blocks are
// compressed where that saves a sector. Which blocks of a sampled unit
// are duplicates comes from a second, exact look-up: the keys of the
// sampled units are gathered by a first sweep, and the full sweep records
// where else each occurs. The after-compression and after-optimization
// sizes are ratio estimates (Σ compressed / Σ raw over the sampled units,
// per VM, applied to the VM's exact raw bytes), with the classical
// linearized variance and the finite population correction; the pool's
// figures are the sums of the VMs'. Errors are half-widths of 95% normal
// intervals, adding the duplicates' variance to the compression's.
//
// What the intervals do not cover is the model: the optimizer compresses
// a taken-apart extent's remaining blocks a run of adjacent ones at a time
// where this compresses a unit's remaining blocks together, judges
// an extent's compressibility as a whole (a sample of each piece, weighed
// by length), compresses revisions by the kernel's range defrag, and
// finds duplicates through an index of limited size (index_size) that can
// miss some in a pool much larger than it. Extents already compressed are
// counted as they are, and their blocks are not matched (their checksums
// are of compressed bytes).
// The blocks read are checked against their stored checksums; a mismatch
// (data changing under the estimate) is reported.
package estimate
