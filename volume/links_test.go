// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// plantLink replaces the pool file name with a hard link to a file
// outside the pool on the same filesystem, and returns that file.
func (h *harness) plantLink(name string) string {
	h.t.Helper()
	outside := filepath.Join(filepath.Dir(h.dir), "outside-"+filepath.Base(name))
	if err := os.WriteFile(outside, pattern(200, mib), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Remove(h.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		h.t.Fatal(err)
	}
	if err := os.Link(outside, h.path(name)); err != nil {
		h.t.Fatal(err)
	}
	return outside
}

// TestRefusesHardLinksOut: a hard link planted at an image that is
// written in place must not let the daemon or the VM write the file it
// links to; each operation is refused and changes nothing.
func TestRefusesHardLinksOut(t *testing.T) {
	const base = "appvms/work/private"
	tests := []struct {
		name    string
		keep    int
		running bool   // the volume is started before the link is planted
		planted string // the name replaced by the link
		op      func(h *harness, spec volume.Spec) error
	}{
		{"resize of the dirty image", 1, true, base + "-dirty.img", func(h *harness, spec volume.Spec) error {
			_, err := h.store.Resize(spec, 2*mib)
			return err
		}},
		{"start reusing the dirty image", 1, true, base + "-dirty.img", func(h *harness, spec volume.Spec) error {
			_, err := h.store.Start(spec)
			return err
		}},
		{"stop committing the dirty image", 1, true, base + "-dirty.img", stop},
		{"stop with snapshots disabled", -1, true, base + "-dirty.img", stop},
		{"start from the precache", 1, false, base + "-precache.img", func(h *harness, spec volume.Spec) error {
			_, err := h.store.Start(spec)
			return err
		}},
		{"start with snapshots disabled", -1, false, base + ".img", func(h *harness, spec volume.Spec) error {
			_, err := h.store.Start(spec)
			return err
		}},
		{"optimizer opening the image", 1, false, base + ".img", func(h *harness, spec volume.Spec) error {
			return h.store.Locked(spec.VID, "test", func(l *volume.Locked) error {
				f, err := l.Open(l.Clean(), os.O_RDWR)
				if err == nil {
					f.Close()
				}
				return err
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			spec := origin(base, tt.keep)
			h.must(h.store.Create(spec))
			if tt.running {
				h.must(h.store.Start(spec))
			}
			outside := h.plantLink(tt.planted)
			if tt.planted == base+"-precache.img" {
				clean, _ := os.Stat(h.path(base + ".img"))
				if err := os.Truncate(outside, clean.Size()); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(outside, clean.ModTime(), clean.ModTime()); err != nil {
					t.Fatal(err)
				}
			}
			want := h.sum(tt.planted)
			before := h.revisionFiles()
			if err := tt.op(h, spec); !errors.Is(err, volume.ErrInvalidName) {
				t.Fatalf("error %v, want ErrInvalidName", err)
			}
			if h.sum(tt.planted) != want {
				t.Fatal("the linked file changed")
			}
			if st, err := os.Stat(outside); err != nil || st.Sys() == nil || !os.SameFile(st, mustStat(t, h.path(tt.planted))) {
				t.Fatalf("%s is no longer the planted link (%v)", tt.planted, err)
			}
			if len(h.revisionFiles()) != len(before) {
				t.Fatal("the revisions changed")
			}
		})
	}
}

func mustStat(t *testing.T, name string) os.FileInfo {
	t.Helper()
	info, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestAllowsHardLinksWithinThePool: a running snapshot's <vol>.img is a
// hard link of its source's clean image, and a killed commit leaves a
// revision on the clean image's inode. The optimizer may still open those
// files, and a source with snapshots disabled may still start.
func TestAllowsHardLinksWithinThePool(t *testing.T) {
	h := newHarness(t)
	tpl := origin("vm-templates/fedora/root", 1)
	h.must(h.store.Create(tpl))
	snap := volume.Spec{VID: "appvms/work/root", RW: true, SnapOnStart: true, Source: tpl.VID, Size: tpl.Size}
	h.must(h.store.Start(snap))
	info := mustStat(t, h.path(tpl.VID+".img"))
	leftover := tpl.VID + ".img.1@" + info.ModTime().UTC().Format("2006-01-02T15:04:05") + "Z"
	if err := os.Link(h.path(tpl.VID+".img"), h.path(leftover)); err != nil {
		t.Fatal(err)
	}
	err := h.store.Locked(tpl.VID, "test", func(l *volume.Locked) error {
		revs, err := l.Revisions()
		if err != nil {
			return err
		}
		if len(revs) != 1 || revs[0].Name() != leftover {
			t.Fatalf("revisions %v, want %s", revs, leftover)
		}
		for _, file := range []volume.File{l.Clean(), revs[0]} {
			f, err := l.Open(file, os.O_RDONLY)
			if err != nil {
				return err
			}
			f.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("open of an image linked within the pool: %v", err)
	}
	tpl.RevisionsToKeep = -1
	h.must(h.store.Start(tpl))
	h.must(h.store.Resize(tpl, 2*tpl.Size))
	h.must(h.store.Stop(tpl))
	h.must(h.store.Stop(snap))
}

// A template started with snapshots disabled whose AppVMs still link its
// image commits once revisions_to_keep was raised while it ran.
func TestCommitsDirtyImageLinkedBySnapshots(t *testing.T) {
	h := newHarness(t)
	tpl := origin("vm-templates/fedora/root", -1)
	h.must(h.store.Create(tpl))
	h.must(h.store.Start(tpl))
	if err := os.MkdirAll(h.path("appvms/work"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(h.path("vm-templates/fedora/root-dirty.img"), h.path("appvms/work/root.img")); err != nil {
		t.Fatal(err)
	}
	h.write("vm-templates/fedora/root-dirty.img", 0, []byte("updated"))
	want := h.sum("vm-templates/fedora/root-dirty.img")
	h.must(h.store.Stop(origin("vm-templates/fedora/root", 1)))
	if got := h.sum("vm-templates/fedora/root.img"); got != want {
		t.Errorf("clean image %s after the commit, want %s", got, want)
	}
}
