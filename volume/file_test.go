// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// A volume lists its images and revisions by kind, the pool's walk lists
// the same, and a File whose name has become a symlink since it was
// listed opens nothing: not the file outside the pool it points to.
func TestFilesListAndOpenBeneathThePool(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 2)
	h.must(h.store.Create(spec))
	h.must(h.store.Start(spec))
	h.must(h.store.Stop(spec))
	h.must(h.store.Start(spec))
	for _, name := range []string{"appvms/work/private.img~1a2b3c", "appvms/work/private.img.01@2025-01-01T00:00:00Z"} {
		if err := os.WriteFile(h.path(name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	files, err := h.store.Files(spec.VID)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[volume.FileKind]volume.File{}
	for _, f := range files {
		if f.VID() != spec.VID {
			t.Errorf("%s is of %s, want %s", f, f.VID(), spec.VID)
		}
		byKind[f.Kind()] = f
	}
	want := map[volume.FileKind]string{ // a prefix of the name
		volume.CleanFile:    "appvms/work/private.img",
		volume.DirtyFile:    "appvms/work/private-dirty.img",
		volume.RevisionFile: "appvms/work/private.img.1@",
	}
	if len(files) != len(want) || len(byKind) != len(want) {
		t.Fatalf("files %v, want one each of %v", files, want)
	}
	for kind, name := range want {
		if got := byKind[kind].Name(); !strings.HasPrefix(got, name) {
			t.Errorf("%s file %q, want %q", kind, got, name)
		}
	}
	if rev := byKind[volume.RevisionFile].Revision(); rev.ID != "1" {
		t.Errorf("revision file holds revision %+v, want 1", rev)
	}
	if walked := eachFile(t, h.store); !slices.Equal(walked, names(files)) {
		t.Errorf("EachFile lists %v, Files %v", walked, names(files))
	}

	outside := filepath.Join(filepath.Dir(h.dir), "outside")
	if err := os.WriteFile(outside, []byte("not the pool's"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirty := byKind[volume.DirtyFile]
	if err := os.Remove(h.path(dirty.Name())); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, h.path(dirty.Name())); err != nil {
		t.Fatal(err)
	}
	if f, err := h.store.Open(dirty); !errors.Is(err, syscall.ELOOP) {
		if err == nil {
			f.Close()
		}
		t.Errorf("Open of a dirty image planted as a symlink: %v, want ELOOP", err)
	}
	if info, err := h.store.Stat(dirty); err != nil || info.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Stat of the symlink = %v, %v; want the link itself", info, err)
	}
	if walked := eachFile(t, h.store); slices.Contains(walked, dirty.Name()) || len(walked) != len(files)-1 {
		t.Errorf("EachFile lists %v with the dirty image a symlink", walked)
	}
	if f, err := h.store.Open(volume.File{}); !errors.Is(err, volume.ErrInvalidName) {
		if err == nil {
			f.Close()
		}
		t.Errorf("Open of the zero File: %v, want ErrInvalidName", err)
	}
	if _, err := h.store.Stat(volume.File{}); !errors.Is(err, volume.ErrInvalidName) {
		t.Errorf("Stat of the zero File: %v, want ErrInvalidName", err)
	}
}

func eachFile(t *testing.T, s *volume.Store) []string {
	t.Helper()
	var out []string
	err := s.EachFile(func(f volume.File, info fs.FileInfo) error {
		if !info.Mode().IsRegular() {
			t.Errorf("EachFile gave %s, mode %v", f, info.Mode())
		}
		out = append(out, f.Name())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func names(files []volume.File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name()
	}
	return out
}
