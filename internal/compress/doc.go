// SPDX-License-Identifier: GPL-2.0-or-later

// Package compress rewrites a file's data compressed with zstd, in place,
// without unsharing anything: an extent only the file references is
// rewritten by a range defrag, which frees the old one; an extent shared
// with anything else (a reflinked copy, a snapshot) is left to the caller,
// who may know every reference to it, or left alone.
//
// Nouns:
//   - A range (Range) is the part of a file a rewrite covers, by offset and
//     by the generations of its extent items.
//   - A piece is an uncompressed, written extent item of the file within
//     the range, clipped to it.
//   - A piece is exclusive when every reference to its disk extent is an
//     item of the file itself (ReferencedOnlyBy).
//   - A piece is worth compressing when a sample of it compressed saves the
//     caller's minimum share of its bytes (DefaultMinSaving).
//
// The optimizer's compress stage uses a Rewriter on the volumes' images,
// and rewrites their shared pieces itself; the CLI's compress command runs
// Files on dom0's own files, leaving shared pieces alone.
package compress
