// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// InlineDataSize returns how many bytes f's inline extent takes inside its
// metadata item: the compressed size when it is compressed, else its
// length. Extents reports an inline extent with its uncompressed length
// only. A file has at most one inline extent, at offset 0; a file without
// one fails with ENODATA. Needs CAP_SYS_ADMIN.
func InlineDataSize(f *os.File) (uint64, error) {
	ino, err := inodeNumber(f)
	if err != nil {
		return 0, err
	}
	errorf := func(format string, args ...any) error {
		return fmt.Errorf("read inline extent of %s (inode %d): "+format,
			append([]any{f.Name(), ino}, args...)...)
	}
	key := fileExtentsKey(ino, 0, 0)
	key.nr_items = 1
	item, err := searchFirst(f, key, fileExtentInlineDataOff, fmt.Errorf("no extent at offset 0: %w", unix.ENODATA))
	if err != nil {
		return 0, errorf("%w", err)
	}
	if item[fileExtentTypeOff] != ExtentInline {
		return 0, errorf("extent at offset 0 is not inline: %w", unix.ENODATA)
	}
	return uint64(len(item) - fileExtentInlineDataOff), nil
}
