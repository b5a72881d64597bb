// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"math/rand/v2"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// The compression stage keeps a copy of a shared extent only when the
// copy takes less space, and records the copy's extents as made by the
// job: both from the copy's extents as they are once written back. The
// units the encoder stores plainly sit in the page cache until then, and
// the kernel finishes encoded writes after they return: a copy listed
// earlier looks smaller than it is, and is recorded in part.
func TestTakesLessThanListsTheWholeCopy(t *testing.T) {
	const n = mib // the original extent's size, on disk too
	mnt := btrfstest.Mount(t, 0)
	compressible := executableLike(n, 3)
	random := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{4}).Read(random)
	tests := []struct {
		name    string
		data    []byte
		plain   bool // the kernel takes no encoded writes: btrfs compresses
		smaller bool
	}{
		{name: "compressible", data: compressible, smaller: true},
		{name: "incompressible", data: random},
		{name: "half compressible", data: append(compressible[:n/2:n/2], random[n/2:]...), smaller: true},
		{name: "written plainly", data: btrfstest.Text("plain", n), plain: true, smaller: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := newCopyEncoder(0, 0, 0, func(err error) { t.Error(err) })
			enc.plain.Store(tt.plain)
			cp, err := newCompressedCopy(openRoot(t, mnt), enc)
			if err != nil {
				t.Fatal(err)
			}
			defer cp.remove()
			if err := cp.write(tt.data, copyBase); err != nil {
				t.Fatal(err)
			}
			exts, smaller, err := takesLessThan(cp, n)
			if err != nil {
				t.Fatal(err)
			}
			var listed, disk uint64
			for _, e := range exts {
				listed, disk = listed+e.Length, disk+e.DiskNumBytes
			}
			if smaller != tt.smaller || listed != n {
				t.Errorf("copy listed as %d bytes in %d on disk, smaller: %v; want all %d bytes, smaller: %v",
					listed, disk, smaller, n, tt.smaller)
			}
		})
	}
}
