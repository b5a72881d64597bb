// SPDX-License-Identifier: GPL-2.0-or-later

// Package btrfs talks to the kernel for btrfs-vdo: reflinks, extent
// listings, compression and deduplication of image files. It is the only
// package that uses ioctls and unsafe struct layouts; everything above it
// sees plain Go values and wrapped errors (errors.Is with unix errnos
// works). Linux only.
//
// # Nouns
//
//   - Data extent: a contiguous run of file data on disk, at most 128 MiB
//     (128 KiB when compressed). It is freed only when its last reference
//     goes, even if most of it is no longer visible in any file (a
//     "bookend").
//   - File extent item (Extent): a metadata item mapping a range of one
//     file onto part of a data extent. A file is a sequence of these.
//     Several files, or several ranges of one file, can point at the same
//     data extent: that is sharing.
//   - Logical address (DiskBytenr): where a data extent lives in the
//     filesystem's own address space, not a device offset. Two file ranges
//     share data exactly when their items have the same logical address.
//   - Inline extent: a small file's data stored inside the metadata item;
//     it has no logical address.
//   - Prealloc extent: space reserved by fallocate and never written.
//   - Hole: a range with no data; reads as zeros.
//   - Generation (transid): the id of a filesystem transaction, growing by
//     one per commit. Each extent item records the generation that wrote
//     its data; clone and dedupe copy the item with its old generation, so
//     "generation >= G" selects exactly the data written since G.
//   - Reflink (clone): make a file share another file's data extents
//     instead of copying bytes. Writes to either file then go to new
//     extents (copy-on-write) and leave the other file untouched.
//   - Dedupe: make a range share another range's data extents, but only
//     after the kernel has checked that their bytes are equal.
//   - Compression: per data extent (zlib, lzo or zstd), chosen when the
//     extent is written. Rewriting a range compressed (DefragCompress)
//     creates new extents and so unshares it from every other reference.
//
// # Layers
//
// ioctl_h.go mirrors the kernel structs and numbers, size_test.go pins
// their layout, ioctl_linux.go has one small function per ioctl, and the
// remaining files are the exported API. Functions take an open *os.File so
// a caller can run several operations on one file without reopening it.
package btrfs
