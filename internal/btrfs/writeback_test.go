// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// After WriteBack, Extents lists what was just written, in each way the
// optimizer writes: plainly (delalloc), by range defrag, which compresses
// in worker threads after the ioctl returns, and encoded.
func TestWriteBack(t *testing.T) {
	mnt := mountBtrfs(t)
	const at, n = 4096, 2 * mib // past the first sector, which could be inline
	unit := textData(btrfs.MaxCompressedExtent, 2)
	frame := btrfs.NewZstdEncoder(3, 1).Encode(nil, unit)
	tests := []struct {
		name        string
		before      []byte // the file's content before the write, synced
		write       func(f *os.File) error
		compression uint8 // of every extent the write made
	}{
		{"plain write", nil, func(f *os.File) error {
			_, err := f.WriteAt(randomData(n, 3), at)
			return err
		}, btrfs.CompressNone},
		{"range defrag", textData(at+n, 4), func(f *os.File) error {
			return btrfs.DefragCompress(f, at, n, 0)
		}, btrfs.CompressZstd},
		{"encoded write", nil, func(f *os.File) error {
			for off := uint64(at); off < at+n; off += uint64(len(unit)) {
				if err := btrfs.WriteZstdExtent(f, off, frame, uint64(len(unit))); err != nil {
					return err
				}
			}
			return nil
		}, btrfs.CompressZstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := create(t, filepath.Join(mnt, tt.name), tt.before)
			old := diskAddrs(extents(t, f, 0))
			if err := tt.write(f); err != nil {
				t.Fatal(err)
			}
			if err := btrfs.WriteBack(f); err != nil {
				t.Fatal(err)
			}
			var made uint64
			for _, e := range extents(t, f, 0) {
				if old[e.DiskBytenr] || e.IsHole() {
					continue
				}
				if e.Compression != tt.compression || !inRange(e, at, at+n) {
					t.Errorf("made extent %+v, want compression %d within [%d, %d)", e, tt.compression, at, at+n)
				}
				made += e.Length
			}
			if made != n {
				t.Errorf("listed %d bytes of new extents, want the %d written", made, n)
			}
		})
	}
}
