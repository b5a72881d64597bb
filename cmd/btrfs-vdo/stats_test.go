// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// A target the daemon does not know is a usage error naming the pools it
// knows, and looking at it changes nothing on disk: no directory is
// adopted as a pool.
func TestUnknownTargetsChangeNothing(t *testing.T) {
	mnt := btrfstest.Mount(t, 512<<20)
	socket := startDaemon(t)
	p := setupPool(t, socket, "vdo", filepath.Join(mnt, "vdo"))
	createVolume(t, socket, p, "appvms/work/private", compressible(1<<20, "work"))
	stranger := filepath.Join(mnt, "not-a-pool")
	if err := os.MkdirAll(filepath.Join(stranger, "appvms"), 0o755); err != nil {
		t.Fatal(err)
	}
	etcHadState := exists(filepath.Join("/etc", volume.StateDir))
	tests := []struct {
		args  []string
		wants []string
	}{
		{[]string{"stats", stranger}, []string{stranger + " is not a pool directory", "known pools: vdo (" + p.DirPath + ")"}},
		{[]string{"stats", "/etc"}, []string{"/etc is not a pool directory"}},
		{[]string{"optimize", stranger}, []string{stranger + " is not a pool directory"}},
		{[]string{"optimize", stranger + ":appvms/work/private"}, []string{stranger + " is not a pool directory"}},
		{[]string{"stats", "nosuch"}, []string{`"nosuch" is neither a pool nor a VM`, "known pools: vdo"}},
		{[]string{"optimize", "nosuch:appvms/work/private"}, []string{`no pool is named "nosuch"`}},
		{[]string{"optimize", "vdo:appvms/nosuch/private"}, []string{"pool vdo has no volume appvms/nosuch/private"}},
		{[]string{"stats", p.DirPath + ":appvms/work/root"}, []string{"pool vdo has no volume appvms/work/root"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := cli(t, socket, tt.args...)
			for _, want := range tt.wants {
				if r.code != exitUsage || !strings.Contains(r.stderr, want) {
					t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %q", r.code, r.stderr, want)
				}
			}
		})
	}
	if exists(filepath.Join(stranger, volume.StateDir)) {
		t.Errorf("%s was adopted as a pool", stranger)
	}
	if !etcHadState && exists(filepath.Join("/etc", volume.StateDir)) {
		t.Errorf("stats /etc made /etc/%s", volume.StateDir)
	}
	r := cli(t, socket, "status", "--json")
	if strings.Contains(r.stdout, stranger) || strings.Contains(r.stdout, `"/etc"`) {
		t.Errorf("status lists a directory only looked at:\n%s", r.stdout)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// Pools are listed by name, whatever order they were set up in, and each
// table lists its names left-aligned, sorted.
func TestStableOrder(t *testing.T) {
	mnt := btrfstest.Mount(t, 512<<20)
	socket := startDaemon(t)
	names := []string{"zeta", "alpha", "mid"}
	for _, name := range names {
		p := setupPool(t, socket, name, filepath.Join(mnt, name))
		createVolume(t, socket, p, "appvms/"+name+"-vm/private", compressible(256<<10, name))
		createVolume(t, socket, p, "appvms/a-"+name+"/private", compressible(256<<10, name))
	}
	first := cli(t, socket, "status")
	for range 3 {
		if again := cli(t, socket, "status"); again.stdout[strings.Index(again.stdout, "\n"):] != first.stdout[strings.Index(first.stdout, "\n"):] {
			t.Fatalf("status changed order:\n%s\n%s", first.stdout, again.stdout)
		}
	}
	assertOrder(t, first.stdout, "alpha ", "mid ", "zeta ")
	r := cli(t, socket, "stats")
	if r.code != exitOK {
		t.Fatalf("stats: exit %d: %s", r.code, r.stderr)
	}
	assertOrder(t, r.stdout, "pool    alpha", "pool    mid", "pool    zeta",
		"vm      a-alpha", "vm      a-mid", "vm      a-zeta", "vm      alpha-vm",
		"volume  alpha:appvms/a-alpha/private", "volume  alpha:appvms/alpha-vm/private", "volume  mid:appvms/a-mid/private")
	if !strings.Contains(r.stdout, "SAVED") || !strings.Contains(r.stdout, "RATIO = DISK / UNCOMPRESSED") {
		t.Errorf("stats has no SAVED column or no RATIO explanation:\n%s", r.stdout)
	}
	if raw := cli(t, socket, "stats", "--bytes", "alpha-vm"); !strings.Contains(raw.stdout, " 262144 ") {
		t.Errorf("stats --bytes does not print bytes:\n%s", raw.stdout)
	}
}

// assertOrder checks that each of wants occurs in out, in that order.
func assertOrder(t *testing.T, out string, wants ...string) {
	t.Helper()
	at := 0
	for _, want := range wants {
		i := strings.Index(out[at:], want)
		if i < 0 {
			t.Fatalf("%q missing or out of order in:\n%s", want, out)
		}
		at += i + len(want)
	}
}

// A pool directory may neither lie inside another pool nor contain one.
func TestNestedPoolRefused(t *testing.T) {
	mnt := btrfstest.Mount(t, 512<<20)
	socket := startDaemon(t)
	outer := setupPool(t, socket, "outer", filepath.Join(mnt, "outer"))
	tests := []struct {
		dir  string
		want string
	}{
		{filepath.Join(outer.DirPath, "appvms", "inner"), "is inside pool outer"},
		{mnt, "contains pool outer"},
	}
	for _, tt := range tests {
		err := request(t, socket, api.OpPoolSetup, api.PoolSetupArgs{Pool: api.Pool{Name: "other", DirPath: tt.dir}}, nil)
		apiErr, ok := err.(*api.Error)
		if !ok || apiErr.Code != api.CodeInvalidName || !strings.Contains(apiErr.Message, tt.want) {
			t.Errorf("setup at %s: %v, want invalid_name %q", tt.dir, err, tt.want)
		}
	}
	if exists(filepath.Join(outer.DirPath, "appvms", "inner")) {
		t.Errorf("the refused pool's directory was made")
	}
	// Setting up the same pool again, as qvm-pool add after a remove does,
	// is no nesting.
	setupPool(t, socket, "outer", outer.DirPath)
}
