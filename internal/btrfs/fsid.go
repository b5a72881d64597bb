// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"fmt"
	"os"
)

// FilesystemID returns the UUID of the btrfs filesystem holding f
// (BTRFS_IOC_FS_INFO fsid). It is the same for every subvolume, unlike
// st_dev, so it tells whether logical addresses of two files are
// comparable.
func FilesystemID(f *os.File) ([16]byte, error) {
	var args btrfs_ioctl_fs_info_args
	if err := iocFsInfo(f, &args); err != nil {
		return [16]byte{}, fmt.Errorf("read filesystem id of %s: %w", f.Name(), err)
	}
	return args.fsid, nil
}
