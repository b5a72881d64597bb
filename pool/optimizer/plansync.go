// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// syncFor commits the transaction before target is planned, without the
// volume's lock, which a start would wait for: the file's data gets its
// extents, and extent reference counts, which decide whether an extent
// is shared and lag until committed, are current. It returns the inode
// target had before the commit: only the job changes that file in place
// (a commit, revert or import puts another file there), so if the planned
// file has that inode, the commit covered it; if not, the planning
// commits again under the lock.
func (p *Pool) syncFor(target volume.File) (uint64, error) {
	var ino uint64
	info, err := p.Volumes.Stat(target)
	if err == nil {
		ino = info.Sys().(*syscall.Stat_t).Ino
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	dir, err := p.openDir()
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	return ino, btrfs.Sync(dir)
}

// syncIfReplaced returns f's inode, first committing the transaction again
// if f is not the file syncFor saw (inode synced).
func syncIfReplaced(f *os.File, synced uint64) (uint64, error) {
	ino, err := compress.InodeOf(f)
	if err != nil || ino == synced {
		return ino, err
	}
	return ino, btrfs.Sync(f)
}
