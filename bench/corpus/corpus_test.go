// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// testScale makes every image its floor size: about 100 MiB of images.
const testScale = 0.01

func TestCorpus(t *testing.T) {
	btrfstest.RequireCommands(t, "mkfs.ext4", "umount")
	mnt := btrfstest.Mount(t, 768<<20)
	ctx := context.Background()
	scratch := filepath.Join(mnt, "scratch")
	if err := os.Mkdir(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Build(ctx, filepath.Join(mnt, "pool"), Options{Scale: testScale, Seed: 1, Scratch: scratch})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, c)

	before, err := c.IdealBound(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkIdeal(t, before)

	for _, tc := range []struct {
		vid    string
		lo, hi float64 // share of the image's blocks the round changes
	}{
		{c.Roots()[0].VID, 0.05, 0.10},
		{c.AppPrivates()[0].VID, 0.01, 0.05},
	} {
		checkUpdateRound(t, c, tc.vid, tc.lo, tc.hi)
	}

	after, err := c.IdealBound(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkIdeal(t, after)
	if after.UniqueBlocks <= before.UniqueBlocks {
		t.Errorf("distinct blocks %d after the update, %d before: the update added no new data",
			after.UniqueBlocks, before.UniqueBlocks)
	}
}

// checkUpdateRound runs vid's update round and checks it was committed as
// file-reflink commits: the image is a new file, the old one's content is
// the only revision, and a share in [lo, hi] of the blocks changed.
func checkUpdateRound(t *testing.T, c *Corpus, vid string, lo, hi float64) {
	t.Helper()
	p, _ := volume.PathsFor(vid)
	img := c.Path(p.Clean)
	pre := digest(t, img)
	preInfo, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.UpdateRound(context.Background(), vid, 1)
	if err != nil {
		t.Fatal(err)
	}
	revs, err := c.Revisions(vid)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 1 || revs[0].N != 2 {
		t.Fatalf("%s: revisions after the update round: %+v, want only revision 2", vid, revs)
	}
	if got := digest(t, revs[0].Path); !bytes.Equal(got, pre) {
		t.Errorf("%s: revision 2 differs from the image before the update", vid)
	}
	if info, err := os.Stat(img); err != nil {
		t.Fatal(err)
	} else if os.SameFile(info, preInfo) {
		t.Errorf("%s: the image is the same file after the commit; file-reflink renames the dirty image over it", vid)
	}
	if _, err := os.Stat(c.Path(p.Dirty)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: dirty image left after the commit (%v)", vid, err)
	}
	changed := changedShare(t, img, revs[0].Path)
	t.Logf("update round: %d files, %d bytes written, %.1f %% of %s's blocks changed", u.Files, u.Bytes, 100*changed, vid)
	if changed < lo || changed > hi {
		t.Errorf("update round changed %.1f %% of %s, want %.0f–%.0f %%", 100*changed, vid, 100*lo, 100*hi)
	}
	checkPrecache(t, c, p)
}

// checkLayout checks that every volume has its image, a precache with the
// image's mtime and exactly one revision, as file-reflink leaves them.
func checkLayout(t *testing.T, c *Corpus) {
	t.Helper()
	if got := len(c.Roots()); got < 2 || got > 3 {
		t.Errorf("%d template roots, want 2–3", got)
	}
	revName := regexp.MustCompile(`\.img\.1@[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$`)
	for _, v := range c.Volumes {
		p, err := volume.PathsFor(v.VID)
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(c.Path(p.Clean))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() != v.Size {
			t.Errorf("%s: image of %d bytes, want %d", v.VID, info.Size(), v.Size)
		}
		checkPrecache(t, c, p)
		revs, err := c.Revisions(v.VID)
		if err != nil {
			t.Fatal(err)
		}
		if len(revs) != 1 || !revName.MatchString(revs[0].Path) {
			t.Errorf("%s: revisions %+v, want one named <vol>.img.1@<timestamp>Z", v.VID, revs)
		}
	}
}

func checkPrecache(t *testing.T, c *Corpus, p volume.Paths) {
	t.Helper()
	img, err := os.Stat(c.Path(p.Clean))
	if err != nil {
		t.Fatal(err)
	}
	pre, err := os.Stat(c.Path(p.Precache))
	if err != nil {
		t.Fatal(err)
	}
	if !pre.ModTime().Equal(img.ModTime()) {
		t.Errorf("%s: precache mtime %v, image mtime %v", p.Clean, pre.ModTime(), img.ModTime())
	}
}

func checkIdeal(t *testing.T, i Ideal) {
	t.Helper()
	t.Logf("ideal bound: %d non-zero blocks, %d distinct, %d bytes compressed", i.Blocks, i.UniqueBlocks, i.Compressed)
	// Every image has a revision and a precache sharing its blocks.
	if i.UniqueBlocks == 0 || i.UniqueBlocks*3 > i.Blocks {
		t.Errorf("distinct blocks %d of %d: want some, and at most a third", i.UniqueBlocks, i.Blocks)
	}
	if i.Compressed <= 0 || i.Compressed >= i.UniqueBytes() {
		t.Errorf("compressed %d bytes of %d distinct: want less, and more than nothing", i.Compressed, i.UniqueBytes())
	}
}

func digest(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

// changedShare is the share of a's 4 KiB blocks that differ from b's.
func changedShare(t *testing.T, a, b string) float64 {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(da) != len(db) {
		t.Fatalf("%s and %s differ in size", a, b)
	}
	var changed int
	for off := 0; off < len(da); off += blockSize {
		if !bytes.Equal(da[off:off+blockSize], db[off:off+blockSize]) {
			changed++
		}
	}
	return float64(changed) / float64(len(da)/blockSize)
}
