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
// is written, not made durable.
//
// It is FIEMAP with FIEMAP_FLAG_SYNC over one byte, mapping no extents:
// btrfs then writes the whole file back, a second time for data
// compressed in worker threads, and waits for its ordered extents, whose
// completion inserts the items. Waiting for page writeback alone
// (sync_file_range) is not enough: pages leave writeback before their
// items are in. btrfs waits so since Linux 6.1 ("btrfs: properly flush
// delalloc when entering fiemap"); before, it wrote the file back once
// and could return with compressed data still in flight.
func WriteBack(f *os.File) error {
	args := fiemap{fm_length: 1, fm_flags: fiemapFlagSync}
	if err := iocFiemap(f, &args); err != nil {
		return fmt.Errorf("write back %s: %w", f.Name(), err)
	}
	return nil
}
