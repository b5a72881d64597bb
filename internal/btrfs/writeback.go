// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"fmt"
	"os"
)

// WriteBack writes f's dirty data back and waits until it has its extent
// items, so that Extents lists what was just written, defragmented or
// written encoded rather than the extents it replaces. It neither commits
// a transaction nor flushes the device, as Sync and f.Sync do: the data
// is on disk, not durable.
//
// It is FIEMAP with FIEMAP_FLAG_SYNC over one byte, mapping no extents:
// btrfs then waits for the whole file's ordered extents, after a second
// writeback pass for data compressed asynchronously, which a plain wait
// for page writeback (sync_file_range) returns before.
func WriteBack(f *os.File) error {
	args := fiemap{fm_length: 1, fm_flags: fiemapFlagSync}
	if err := iocFiemap(f, &args); err != nil {
		return fmt.Errorf("write back %s: %w", f.Name(), err)
	}
	return nil
}
