// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Generation returns the filesystem's current generation: the id of the
// running transaction, or of the last committed one when none is running.
// Every extent written after the call has a generation >= the result, so
// it is the value to pass to Extents later. The bound is inclusive: data
// written shortly before the call, in the same transaction, is listed too.
func Generation(f *os.File) (uint64, error) {
	args := btrfs_ioctl_fs_info_args{flags: btrfsFsInfoFlagGeneration}
	if err := iocFsInfo(f, &args); err != nil {
		return 0, fmt.Errorf("read generation of %s: %w", f.Name(), err)
	}
	// Kernels before the flag existed zero the flags and leave generation
	// unset; 0 would silently mean "everything".
	if args.flags&btrfsFsInfoFlagGeneration == 0 {
		return 0, fmt.Errorf("read generation of %s: kernel does not report it: %w", f.Name(), unix.EOPNOTSUPP)
	}
	return args.generation, nil
}

// Sync writes back all dirty data of the filesystem holding f and commits
// the transaction (BTRFS_IOC_SYNC), so every write so far has its extent
// item and the generation moves past it.
func Sync(f *os.File) error {
	if err := iocSync(f); err != nil {
		return fmt.Errorf("sync filesystem of %s: %w", f.Name(), err)
	}
	return nil
}

// SyncGeneration writes back and commits everything written so far on
// the filesystem holding f, and returns the generation that divides it
// from later writes: every extent written before the call has a smaller
// one, every extent written after the call returns one at least as large.
// Unlike Generation after a Sync, it is exact on an idle filesystem too,
// where the last committed transaction holds the writes just made.
func SyncGeneration(f *os.File) (uint64, error) {
	if err := Sync(f); err != nil {
		return 0, err
	}
	// A transaction may have started since Sync committed: committing it
	// too makes its id the last that later writes cannot join.
	transid, err := iocStartSync(f)
	if err == nil {
		err = iocWaitSync(f, transid)
	}
	if err != nil {
		return 0, fmt.Errorf("commit transaction of %s: %w", f.Name(), err)
	}
	return transid + 1, nil
}
