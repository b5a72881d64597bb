// SPDX-License-Identifier: GPL-2.0-or-later

package fsroot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
)

// WriteFileDurably replaces name, a file directly beneath r, with data: a
// temp file made anew (whatever stood at its name is removed, never
// followed), synced, renamed over name, and r synced.
func (r *Root) WriteFileDurably(name string, data []byte) error {
	tmp := name + "~"
	if err := r.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: %w", name, err)
	}
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	failpoint.Hit("state.after-temp-write")
	if err == nil {
		err = r.Rename(tmp, name)
	}
	if err != nil {
		_ = r.Remove(tmp)
		return fmt.Errorf("write %s/%s: %w", r.Name(), name, err)
	}
	failpoint.Hit("state.after-rename")
	return r.SyncDir()
}
