// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"errors"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestRefusesVolumeNamesThatClash: a volume whose name is another's plus
// an image suffix would create, start or remove the other's files. While
// appvms/work/private runs, each such create must be refused and leave
// the running image alone, so that the stop commits what the VM wrote.
func TestRefusesVolumeNamesThatClash(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	h.must(h.store.Start(spec))
	h.write("appvms/work/private-dirty.img", 0, pattern(3, mib))
	written := h.sum("appvms/work/private-dirty.img")
	for _, vid := range []string{
		"appvms/work/private-dirty", "appvms/work/private-precache", "appvms/work/private-import",
		"appvms/work/private.img", "appvms/work/private.img.1",
	} {
		t.Run(vid, func(t *testing.T) {
			for op, call := range map[string]func(volume.Spec) (volume.State, error){
				"create": h.store.Create, "start": h.store.Start, "remove": h.store.Remove,
			} {
				if _, err := call(origin(vid, 1)); !errors.Is(err, volume.ErrInvalidName) {
					t.Fatalf("%s: error %v, want ErrInvalidName", op, err)
				}
			}
			if h.sum("appvms/work/private-dirty.img") != written {
				t.Fatal("the running volume's dirty image changed")
			}
		})
	}
	h.must(h.store.Stop(spec))
	if h.sum("appvms/work/private.img") != written {
		t.Fatal("the stop did not commit what the VM wrote")
	}
}

func TestAcceptsNamesThatOnlyLookAlike(t *testing.T) {
	for _, vid := range []string{
		"appvms/work-dirty/private", "appvms/a.img/b", "appvms/work/dirty",
		"appvms/work/private-dirtyx", "appvms/work/private.im", "vm-templates/fedora-42/root",
	} {
		if err := volume.ValidateVID(vid); err != nil {
			t.Errorf("%s refused: %v", vid, err)
		}
	}
}
