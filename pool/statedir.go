// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// openStateDir opens the StateDir of the pool directory pool, creating
// it. Everything the daemon keeps there is opened through the returned
// root, so a symlink planted at StateDir or inside it leads nowhere: the
// pool is refused rather than its state kept in whatever directory
// StateDir points to.
func openStateDir(pool *fsroot.Root) (*fsroot.Root, error) {
	if err := pool.Mkdir(volume.StateDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	root, err := pool.OpenRoot(volume.StateDir)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("state directory %s/%s is not a directory (a symlink?); remove it: %w", pool.Name(), volume.StateDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open state directory: %w", err)
	}
	return root, nil
}
