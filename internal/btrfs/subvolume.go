// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"fmt"
	"os"
)

// SubvolumeID returns the id of the subvolume f is in: the Root that
// LogicalInodes reports for f's items. Inode numbers are unique only
// within a subvolume, so a reference is f's only if both match.
func SubvolumeID(f *os.File) (uint64, error) {
	// With treeid 0 the kernel looks in f's own subvolume and reports
	// its id; the subvolume's root directory needs no path lookup.
	args := btrfs_ioctl_ino_lookup_args{objectid: btrfsFirstFreeObjectid}
	if err := iocInoLookup(f, &args); err != nil {
		return 0, fmt.Errorf("look up the subvolume of %s: %w", f.Name(), err)
	}
	return args.treeid, nil
}
