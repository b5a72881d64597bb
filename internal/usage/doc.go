// SPDX-License-Identifier: GPL-2.0-or-later

// Package usage measures how much disk space a set of files on one btrfs
// filesystem takes, with the numbers compsize prints for the same files,
// plus how much of that space the set holds alone.
//
// # Nouns
//
//   - File set: the regular files measured together. Directories given to
//     Measure stand for every regular file below them.
//   - Data extent: a run of data on disk, identified by its logical
//     address (btrfs.Extent.DiskBytenr), possibly compressed. Several files,
//     or several ranges of one file, can reference the same data extent.
//   - Reference: one file extent item pointing at a data extent. Holes are
//     not references; inline extents are counted apart (Inline).
//   - Disk usage (DiskBytes): the on-disk (compressed) size of every data
//     extent the set references, each extent counted once however often it
//     is referenced, plus the bytes inline extents store in metadata.
//   - Uncompressed (UncompressedBytes): the same extents at their full
//     uncompressed size, including parts no file sees any more (the
//     "bookends" left by partial overwrites).
//   - Referenced (ReferencedBytes): the file bytes the references map, each
//     reference counted: a range shared by two files counts twice.
//   - Type: the compression of a data extent ("none", "zlib", "lzo",
//     "zstd", "?N" for an unknown algorithm N), or "prealloc" for space
//     reserved by fallocate and not yet written.
//   - Shared and exclusive: a data extent is exclusive to the set when
//     every reference to it lies inside the set, so deleting the set would
//     free it; otherwise files outside the set also hold it and it is
//     shared. Inline extents are always exclusive.
//   - Ratio: disk usage over uncompressed size; below 1 means compression
//     saves space.
package usage
