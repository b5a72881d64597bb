// SPDX-License-Identifier: GPL-2.0-or-later

// Package fsroot opens and changes files beneath one directory, the way
// Go 1.24's os.Root does, on the Go 1.23 that Fedora 41 ships.
//
// Every name is resolved with openat2(2) relative to the root's
// descriptor, with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS, so neither
// "..", an absolute path nor any symlink is followed, not even one that
// stays beneath the root (stricter than os.Root), and a directory renamed
// or replaced by a symlink after Open does not move what the root refers
// to. Magic links (/proc/self/fd/N and the like) are refused everywhere. Operations on a
// name's last component (Lstat, Remove, Rename, Link, Mkdir, Chtimes) act
// on that entry itself and never follow it, so a planted symlink is
// removed or renamed, not its target.
package fsroot
