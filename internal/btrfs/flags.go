// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Inode flags as seen by FS_IOC_GETFLAGS and chattr.
const (
	FlagCompress   = 0x4      // FS_COMPR_FL, chattr +c: compress new writes
	FlagImmutable  = 0x10     // FS_IMMUTABLE_FL, chattr +i: no change at all, not even of properties
	FlagAppend     = 0x20     // FS_APPEND_FL, chattr +a: only appends
	FlagNoCompress = 0x400    // FS_NOCOMP_FL, chattr +m: set by the kernel when data looked incompressible
	FlagNoCOW      = 0x800000 // FS_NOCOW_FL, chattr +C: no COW, no checksums, no compression; only on empty files
)

// Flags returns f's inode flags (FS_IOC_GETFLAGS).
func Flags(f *os.File) (uint32, error) {
	flags, err := iocGetFlags(f)
	if err != nil {
		return 0, fmt.Errorf("get inode flags of %s: %w", f.Name(), err)
	}
	return flags, nil
}

// SetFlags replaces f's inode flags (FS_IOC_SETFLAGS). Read them with Flags
// first and change only the bits you mean to.
func SetFlags(f *os.File, flags uint32) error {
	if err := iocSetFlags(f, flags); err != nil {
		return fmt.Errorf("set inode flags of %s to %#x: %w", f.Name(), flags, err)
	}
	return nil
}

// compressionXattr is the xattr behind `btrfs property set FILE compression`.
const compressionXattr = "btrfs.compression"

// CompressionProperty returns f's compression property, "" when unset.
func CompressionProperty(f *os.File) (string, error) {
	buf := make([]byte, 16) // longer than any algorithm's name and level
	n, err := unix.Fgetxattr(int(f.Fd()), compressionXattr, buf)
	runtime.KeepAlive(f)
	switch {
	case errors.Is(err, unix.ENODATA):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("get %s of %s: %w", compressionXattr, f.Name(), err)
	}
	return string(buf[:n]), nil
}

// SetCompressionProperty sets f's compression property: "zstd", "lzo" or
// "zlib" compress new writes with that algorithm (at its default level),
// "none" disables compression, and "" removes the setting.
func SetCompressionProperty(f *os.File, algo string) error {
	err := unix.Fsetxattr(int(f.Fd()), compressionXattr, []byte(algo), 0)
	runtime.KeepAlive(f)
	if err != nil {
		return fmt.Errorf("set %s=%q on %s: %w", compressionXattr, algo, f.Name(), err)
	}
	return nil
}
