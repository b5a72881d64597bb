// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// An extent of the plan that no longer exists when the replace pass gets
// to it (a later batch freed it, or it is not committed) has nothing to
// free: the pass leaves it, and the job does not fail.
func TestTargetsOfAnExtentGoneSincePlan(t *testing.T) {
	p, dir := openTestPool(t, "appvms/a")
	img := filepath.Join(dir, "appvms/a/private.img")
	writeFile(t, img, 0, executableLike(mib, 5), false)
	job := Job{VID: "appvms/a/private"}
	r := newJobRun(p, job, 0, newCopyEncoder(0, 0, func(error) {}), func(error) {})
	if r.dedup = newDeduper(r); r.dedup == nil {
		t.Fatal("no dedup stage: the index did not open")
	}
	defer r.dedup.finish()
	const gone = 1 << 50 // no extent starts at this address
	de := dataExtent{bytenr: gone, diskBytes: 128 << 10,
		items: []btrfs.Extent{{Offset: 0, Length: 128 << 10, DiskBytenr: gone, DiskNumBytes: 128 << 10}}}
	err := p.Volumes.Locked(job.VID, "test", func(l *volume.Locked) error {
		f, err := l.Open(l.Clean(), os.O_RDONLY)
		if err != nil {
			return err
		}
		defer f.Close()
		ino, err := compress.InodeOf(f)
		if err != nil {
			return err
		}
		files, err := r.dedup.targets(l, dedupDest{f: f, file: l.Clean(), path: img}, ino, de)
		if len(files) != 0 {
			t.Errorf("targets of a missing extent: %v", files)
		}
		return err
	})
	if err != nil {
		t.Fatalf("targets of a missing extent: %v", err)
	}
}
