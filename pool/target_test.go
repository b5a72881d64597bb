// SPDX-License-Identifier: GPL-2.0-or-later

package pool_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
)

// A pass over many volumes takes the templates first, across pools.
func TestResolveOrdersTemplatesFirst(t *testing.T) {
	reg := pooltest.Start(t, pooltest.Options{}).Pools
	for _, name := range []string{"a", "b"} {
		p, err := reg.Open(name, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, vid := range []string{"appvms/work/private", "vm-templates/fedora/root"} {
			if _, err := p.Volumes.Create(spec(vid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tt := range []struct {
		target string
		want   []string
	}{
		{"", []string{"vm-templates", "vm-templates", "appvms", "appvms"}},
		{"a", []string{"vm-templates", "appvms"}},
	} {
		vols, err := reg.Resolve(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vols {
			got = append(got, strings.Split(v.VID, "/")[0])
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Resolve(%q) = %v, want %v", tt.target, got, tt.want)
		}
	}
}

// A name several open pools share names none of them: the directory
// tells them apart.
func TestResolveRefusesAnAmbiguousName(t *testing.T) {
	reg := pooltest.Start(t, pooltest.Options{}).Pools
	var dirs []string
	for range 2 {
		dir := t.TempDir()
		if _, err := reg.Open("vdo", dir); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	if _, err := reg.Resolve("vdo"); !errors.Is(err, pool.ErrUnknownTarget) || !strings.Contains(err.Error(), "2 pools are named") {
		t.Fatalf("Resolve(vdo) = %v", err)
	}
	if _, err := reg.Resolve(dirs[1]); err != nil {
		t.Fatalf("Resolve(%s) = %v", dirs[1], err)
	}
}
