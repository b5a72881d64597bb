// SPDX-License-Identifier: GPL-2.0-or-later

// Package version holds the release version of the daemon and the CLI.
package version

// Version is overridden at link time by the Makefile
// (-X github.com/btrfs-vdo/btrfs-vdo/internal/version.Version=...).
var Version = "0.1.0"
