// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// TestGeneratedTree checks that a generated system tree is fixed by its
// seed, in its list and its bytes, and shaped like a system's /usr.
func TestGeneratedTree(t *testing.T) {
	const size = 64 << 20
	list := func(seed uint64) []sysFile {
		files, err := newGeneratedTree(seed, size).files()
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	files := list(1)
	if !reflect.DeepEqual(files, list(1)) {
		t.Fatal("two trees of seed 1 list different files")
	}
	if reflect.DeepEqual(files, list(2)) {
		t.Fatal("trees of seeds 1 and 2 list the same files")
	}

	var total, large int64
	var compressed int
	sizes := make([]int64, len(files))
	for i, f := range files {
		sizes[i] = f.size
		total += f.blocks()
		if f.size >= minUpdatedFile {
			large += f.size
		}
		if f.compressed() {
			compressed++
		}
	}
	slices.Sort(sizes)
	median := sizes[len(sizes)/2]
	t.Logf("%d files, %d bytes in blocks, median %d bytes, %d compressed", len(files), total, median, compressed)
	if total < size {
		t.Errorf("tree of %d bytes, asked for %d", total, size)
	}
	if median < 1<<10 || median > 8<<10 {
		t.Errorf("median file size %d bytes, want a few KiB as in /usr", median)
	}
	if share := float64(large) / float64(total); share < 0.5 {
		t.Errorf("%.2f of the bytes in files of %d bytes or more (what an update rewrites), want most", share, minUpdatedFile)
	}
	// compressedShare of the files that are not executables or libraries.
	if share := float64(compressed) / float64(len(files)); share < 0.03 || share > 0.12 {
		t.Errorf("%.3f of the files compressed, want about 0.06", share)
	}

	checkStagedTwice(t, files[:64], size)
}

// checkStagedTwice stages sample from two trees of seed 1 and checks that
// every file has the same bytes, mode and mtime in both.
func checkStagedTwice(t *testing.T, sample []sysFile, size int64) {
	t.Helper()
	dirs := [2]string{t.TempDir(), t.TempDir()}
	for _, dir := range dirs {
		tree := newGeneratedTree(1, size)
		for _, f := range sample {
			if err := tree.stage(dir, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range sample {
		var data [2][]byte
		var infos [2]os.FileInfo
		for i, dir := range dirs {
			var err error
			if data[i], err = os.ReadFile(filepath.Join(dir, f.path)); err != nil {
				t.Fatal(err)
			}
			if infos[i], err = os.Stat(filepath.Join(dir, f.path)); err != nil {
				t.Fatal(err)
			}
		}
		if int64(len(data[0])) != f.size || !bytes.Equal(data[0], data[1]) {
			t.Fatalf("%s: staged %d and %d bytes, want the same %d", f.path, len(data[0]), len(data[1]), f.size)
		}
		if infos[0].Mode() != infos[1].Mode() || !infos[0].ModTime().Equal(infos[1].ModTime()) || !infos[0].ModTime().Equal(treeMtime) {
			t.Fatalf("%s: modes %v %v, mtimes %v %v", f.path, infos[0].Mode(), infos[1].Mode(), infos[0].ModTime(), infos[1].ModTime())
		}
	}
}
