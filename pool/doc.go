// SPDX-License-Identifier: GPL-2.0-or-later

// Package pool holds the pools the daemon serves. Each pool is a directory
// on btrfs in file-reflink's layout (volume.TopDirs, volume.StateDir); the
// Registry opens each directory once, remembers it across restarts,
// resolves the optimize command's targets, and lets go of idle pools'
// descriptors so their filesystems can be unmounted. Setup makes a pool
// directory for qvm-pool add.
//
// A Pool pairs a directory's volume store with the optimizer's side of it
// (optimizer.Pool), through whose hooks every start and commit of the
// store reaches the optimizer. The registry is given its optimizer when it
// is made (Config.Optimizer), so every pool it opens optimizes, unless
// there is none.
package pool
