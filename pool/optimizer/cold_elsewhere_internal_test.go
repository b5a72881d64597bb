// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const kib = 1 << 10

// volumeFiles returns the files of the volumes vids, made in a pool
// beneath a temporary directory: each one's image and precache.
func volumeFiles(t *testing.T, vids ...string) []volume.File {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "appvms"), 0o755); err != nil {
		t.Fatal(err)
	}
	store, err := volume.Open(dir, logtest.Discard(), volume.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var out []volume.File
	for _, vid := range vids {
		if _, err := store.Create(volume.Spec{VID: vid, RW: true, SaveOnStop: true, Size: mib}); err != nil {
			t.Fatal(err)
		}
		files, err := store.Files(vid)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, files...)
	}
	return out
}

// ref is a reference of file at off to [lo, hi) of an extent.
func ref(file volume.File, off, lo, hi uint64) extentRef {
	return extentRef{refLoc: refLoc{name: file, offset: off, extentOffset: lo, length: hi - lo}}
}

// What a cold copy still holds once runs moved elsewhere: each reference
// less the runs, cut where they fall.
func TestRefsWithoutCutsMovedRuns(t *testing.T) {
	files := volumeFiles(t, "appvms/work/private")
	imageFile, otherFile := files[0], files[1]
	whole := ref(imageFile, 1024*kib, 0, 128*kib)
	tail := ref(otherFile, 64*kib, 64*kib, 128*kib)
	tests := []struct {
		name  string
		moved []extentRange
		want  []extentRef
	}{
		{"nothing moved", nil, []extentRef{whole, tail}},
		{"a run inside", []extentRange{{16 * kib, 32 * kib}}, []extentRef{
			ref(imageFile, 1024*kib, 0, 16*kib), ref(imageFile, 1056*kib, 32*kib, 128*kib), tail}},
		{"runs at both ends and one the tail misses", []extentRange{{0, 8 * kib}, {40 * kib, 48 * kib}, {120 * kib, 128 * kib}}, []extentRef{
			ref(imageFile, 1032*kib, 8*kib, 40*kib), ref(imageFile, 1072*kib, 48*kib, 120*kib),
			ref(otherFile, 64*kib, 64*kib, 120*kib)}},
		{"everything", []extentRange{{0, 128 * kib}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := refsWithout([]extentRef{whole, tail}, tc.moved); !slices.Equal(got, tc.want) {
				t.Errorf("refsWithout = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A run's source never reaches into the extent the run is to leave: a
// stale index entry can lead to one of its own references.
func TestOutsideStopsAtTheExtentsReferences(t *testing.T) {
	files := volumeFiles(t, "appvms/work/private", "appvms/mail/private")
	imageFile, otherFile := files[0], files[2]
	refs := []extentRef{ref(imageFile, 1024*kib, 0, 64*kib), ref(imageFile, 512*kib, 0, 64*kib)}
	tests := []struct {
		name string
		src  blockSource
		n    uint64
		want uint64
	}{
		{"another file", blockSource{file: otherFile, offset: 1024 * kib}, 32 * kib, 32 * kib},
		{"before the reference", blockSource{file: imageFile, offset: 960 * kib}, 32 * kib, 32 * kib},
		{"running into it", blockSource{file: imageFile, offset: 1008 * kib}, 32 * kib, 16 * kib},
		{"inside another of its references", blockSource{file: imageFile, offset: 520 * kib}, 8 * kib, 0},
		{"after it", blockSource{file: imageFile, offset: 1088 * kib}, 8 * kib, 8 * kib},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := outside(tc.src, tc.n, refs); got != tc.want {
				t.Errorf("outside = %d, want %d", got, tc.want)
			}
		})
	}
}
