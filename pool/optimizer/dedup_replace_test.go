// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// The dedup stage works on the extents the plan listed. If the clean image
// is replaced in between (a revert, an import), those extents are another
// file's: the stage must stop before reading anything.
func TestReplacePassStopsOnImageReplacedSincePlan(t *testing.T) {
	p, dir := openTestPool(t, "appvms/a")
	img := filepath.Join(dir, "appvms/a/private.img")
	writeFile(t, img, 0, executableLike(4*mib, 3), false)
	job := Job{VID: "appvms/a/private"}
	files, err := p.planFiles(job)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || !files[0].clean() || len(files[0].extents) == 0 {
		t.Fatalf("plan %+v: want the clean image's extents", files)
	}
	btrfstest.Reflink(t, img, img+"~")
	if err := os.Rename(img+"~", img); err != nil {
		t.Fatal(err)
	}
	r := newDedupRun(t, p, job)
	if err := r.dedup.replacePass(context.Background(), files[0], func(uint64, uint64) {}); err != nil {
		t.Fatal(err)
	}
	if c := r.res.Counters; c.Get(CountDedupBytesHashed) != 0 || c.Get(CountDedupBytesRewritten) != 0 || len(r.ledger.deduped) != 0 {
		t.Fatalf("the stage worked on the replaced image: %+v, replaced %v", c, r.ledger.deduped)
	}
}

// newDedupRun is a run of job in p with the dedup stage, at the default
// level, finished when the test ends.
func newDedupRun(t *testing.T, p *Pool, job Job) *jobRun {
	t.Helper()
	r := newJobRun(p, job, 0, newCopyEncoder(0, 0, 0, func(error) {}), func(error) {})
	if r.dedup = newDeduper(r); r.dedup == nil {
		t.Fatal("no dedup stage: the index did not open")
	}
	t.Cleanup(r.dedup.finish)
	return r
}
