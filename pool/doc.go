// SPDX-License-Identifier: GPL-2.0-or-later

// Package pool holds the pools the daemon serves: each pool is a directory
// on btrfs in the file-reflink layout, with its volume store and the record
// of what was committed in it. Commits are handed to the pool through the
// volume store's commit hook; that is where background optimisation of new
// data attaches.
package pool
