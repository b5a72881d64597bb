// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// An extent of the plan that no longer exists when the replace pass gets
// to it (an earlier batch freed it, or it is not committed) is told apart
// from one shared beyond the volume, so that the pass leaves it without
// failing the job or counting it as shared.
func TestTargetsOfAnExtentGoneSincePlan(t *testing.T) {
	p, dir := openTestPool(t, "appvms/a")
	img := filepath.Join(dir, "appvms/a/private.img")
	writeFile(t, img, 0, executableLike(mib, 5), false)
	job := Job{VID: "appvms/a/private"}
	r := newDedupRun(t, p, job)
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
		if len(files) != 0 || !errors.Is(err, errExtentGone) {
			t.Errorf("targets of a missing extent: %v, %v; want errExtentGone", files, err)
		}
		pl := &extentPlan{dataExtent: de, sampled: 128 << 10, sampledStored: 4096} // compressible
		if err := r.dedup.decide(l, dedupDest{f: f, file: l.Clean(), path: img}, ino, pl); err != nil || pl.dests != nil {
			t.Errorf("decide on a missing extent: %v, dests %v", err, pl.dests)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.res.Counters.Get(CountCompressBytesSkippedShared); n != 0 {
		t.Errorf("a missing extent counted as %d bytes shared beyond the volume", n)
	}
}
