// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"errors"
	"maps"
	"os"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestRevisionNumbersPastTheIDRange: revision 9999999999999999999 is the
// last id there is. A commit after it is refused and changes nothing, and
// files whose number is no revision id (too long, a leading zero, not a
// number) are neither listed, pruned nor reverted to, but removed with
// the volume, its directory included; a temp file of such a name goes at
// the next start.
func TestRevisionNumbersPastTheIDRange(t *testing.T) {
	const base = "appvms/work/private"
	h := newHarness(t)
	spec := origin(base, 2)
	h.committedThrice(spec)
	last := base + ".img.9999999999999999999@2026-01-01T00:00:00Z"
	odd := []string{
		base + ".img.10000000000000000000@2026-01-02T00:00:00Z",
		base + ".img.01@2026-01-03T00:00:00Z",
		base + ".img.x@2026-01-04T00:00:00Z",
		base + ".img.5@2026-1x-05T00:00:00Z",
	}
	temp := base + ".img.6@2026-01-06T00:00:00Z~a1b2"
	for i, name := range append([]string{last, temp}, odd...) {
		if err := os.WriteFile(h.path(name), pattern(byte(i), 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := h.must(h.store.Info(spec))
	if n := len(st.Revisions); n != 3 || st.Revisions[n-1].ID != "9999999999999999999" {
		t.Fatalf("revisions = %+v, want two and the last id", st.Revisions)
	}
	before := h.revisionFiles()

	h.must(h.store.Start(spec))
	if h.exists(temp) {
		t.Errorf("start left the temp file %s", temp)
	}
	h.write(base+"-dirty.img", 0, pattern(5, mib))
	if _, err := h.store.Stop(spec); !errors.Is(err, volume.ErrInvalidName) {
		t.Fatalf("stop after the last id: %v, want ErrInvalidName", err)
	}
	if after := h.revisionFiles(); !maps.Equal(after, before) {
		t.Fatalf("refused stop changed the revisions:\nbefore %v\nafter  %v", before, after)
	}
	for _, id := range []string{"10000000000000000000", "01", "x"} {
		if _, err := h.store.Revert(spec, id); !errors.Is(err, volume.ErrInvalidName) {
			t.Errorf("revert to %s: %v, want ErrInvalidName", id, err)
		}
	}

	// Pruning takes listed revisions only.
	if err := os.Remove(h.path(last)); err != nil {
		t.Fatal(err)
	}
	h.must(h.store.Stop(spec))
	for _, name := range odd {
		if !h.exists(name) {
			t.Errorf("commit removed %s, which is no revision of the volume", name)
		}
	}

	h.must(h.store.Remove(spec))
	if entries, err := os.ReadDir(h.path("appvms/work")); err == nil {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("remove left %v", names)
	}
}
