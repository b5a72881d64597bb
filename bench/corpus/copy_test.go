// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

func TestCopyTo(t *testing.T) {
	btrfstest.RequireCommands(t, "mkfs.ext4", "umount")
	mnt := btrfstest.Mount(t, 768<<20)
	scratch := filepath.Join(mnt, "scratch")
	if err := os.Mkdir(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Build(context.Background(), filepath.Join(mnt, "pool"), Options{Scale: testScale, Seed: 1, Scratch: scratch})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.CopyTo(filepath.Join(mnt, "copy"))
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, cp)
	files := 0
	err = filepath.WalkDir(c.Dir, func(src string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(c.Dir, src)
		dst := cp.Path(rel)
		files++
		if !bytes.Equal(digest(t, src), digest(t, dst)) {
			t.Errorf("%s: the copy's data differs", rel)
		}
		if a, b := dataRegions(t, src), dataRegions(t, dst); !slices.Equal(a, b) {
			t.Errorf("%s: data regions %v, the copy's %v", rel, a, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no files in the corpus")
	}
	for _, v := range c.Volumes {
		checkCopiedVolume(t, c, cp, v.VID)
	}
}

// checkCopiedVolume checks that the copy of vid's image has extents of
// its own and that its revision and precache are reflinks of it.
func checkCopiedVolume(t *testing.T, c, cp *Corpus, vid string) {
	t.Helper()
	p, _ := volume.PathsFor(vid)
	img := signature(t, cp.Path(p.Clean))
	if img == signature(t, c.Path(p.Clean)) {
		t.Errorf("%s: the copy's image shares its extents with the source's", vid)
	}
	revs, err := cp.Revisions(vid)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{cp.Path(p.Precache), revs[0].Path} {
		if signature(t, path) != img {
			t.Errorf("%s: %s is not a reflink of the copied image", vid, path)
		}
	}
}

func signature(t *testing.T, path string) string {
	t.Helper()
	s, err := extentSignature(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dataRegions lists the [start, end) data regions of the file at path.
func dataRegions(t *testing.T, path string) [][2]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]int64
	fd := int(f.Fd())
	for off := int64(0); ; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]int64{start, end})
		off = end
	}
}
