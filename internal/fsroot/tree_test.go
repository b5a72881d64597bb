// SPDX-License-Identifier: GPL-2.0-or-later

package fsroot_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

func TestRemoveAllDescendsNoSymlink(t *testing.T) {
	r, dir, outside := tree(t)
	deep := filepath.Join(dir, "sub", "deep")
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 300 { // more than one batch of names
		write(t, filepath.Join(deep, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), "x")
	}
	if err := os.Symlink(outside, filepath.Join(deep, "out")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sub", "dir-out", "missing"} {
		if err := r.RemoveAll(name); err != nil {
			t.Errorf("RemoveAll(%s): %v", name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sub is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Errorf("the outside file is gone: %v", err)
	}
	if err := r.RemoveAll("../outside"); err == nil {
		t.Error("RemoveAll(../outside) succeeded")
	}
}

func TestOpenRootRefusesSymlink(t *testing.T) {
	r, _, _ := tree(t)
	if _, err := r.OpenRoot("dir-out"); err == nil {
		t.Fatal("OpenRoot through a symlink succeeded")
	}
	sub, err := r.OpenRoot("sub")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Open("../file"); err == nil {
		t.Error("a root opened beneath another lets .. out")
	}
}

// A released root opened with OpenRoot opens its directory again beneath
// its parent, and refuses a symlink or another directory put in its place.
func TestReleasedSubRootReopensOnlyItsDirectory(t *testing.T) {
	r, dir, outside := tree(t)
	write(t, filepath.Join(dir, "sub", "mine"), "x")
	sub, err := r.OpenRoot("sub")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for _, release := range []*fsroot.Root{sub, r} {
		if err := release.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if held := openUnder(t, dir); len(held) != 0 {
		t.Fatalf("released roots hold %v", held)
	}
	if _, err := sub.Stat("mine"); err != nil {
		t.Fatalf("Stat after Release = %v", err)
	}
	for _, tt := range []struct {
		name    string
		replace func(sub string) error
		want    error
	}{
		{"symlink", func(sub string) error { return os.Symlink(outside, sub) }, unix.ENOTDIR},
		{"directory", func(sub string) error { return os.Mkdir(sub, 0o700) }, unix.ESTALE},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "sub")
			if err := sub.Release(); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path, path+"."+tt.name); err != nil {
				t.Fatal(err)
			}
			if err := tt.replace(path); err != nil {
				t.Fatal(err)
			}
			if _, err := sub.Stat("mine"); !errors.Is(err, tt.want) {
				t.Fatalf("Stat with a %s at the root's path = %v, want %v", tt.name, err, tt.want)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+"."+tt.name, path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpenOwnFile(t *testing.T) {
	r, dir, outside := tree(t)
	if err := os.Link(filepath.Join(outside, "secret"), filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"file", true}, {"hard", false}, {"fifo", false}, {"sub", false}, {"rel-in", false}, {"abs-out", false},
	} {
		f, err := r.OpenOwnFile(tt.name, os.O_RDWR)
		if tt.ok {
			if err != nil {
				t.Errorf("OpenOwnFile(%s): %v", tt.name, err)
			} else {
				f.Close()
			}
			continue
		}
		if !errors.Is(err, fsroot.ErrNotOwnFile) {
			t.Errorf("OpenOwnFile(%s) = %v, want ErrNotOwnFile", tt.name, err)
		}
		if err == nil {
			f.Close()
		}
	}
}

func TestLinkFileNamesATempFile(t *testing.T) {
	r, dir, _ := tree(t)
	f, err := r.OpenFile("sub", os.O_RDWR|unix.O_TMPFILE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("made whole"); err != nil {
		t.Fatal(err)
	}
	if err := r.LinkFile(f, "sub/named"); err != nil {
		t.Fatal(err)
	}
	if err := r.LinkFile(f, "dir-out/named"); err == nil {
		t.Error("LinkFile through a symlink succeeded")
	}
	if data, err := os.ReadFile(filepath.Join(dir, "sub/named")); err != nil || string(data) != "made whole" {
		t.Errorf("linked file reads %q, %v", data, err)
	}
	if err := r.SyncDir(); err != nil {
		t.Error(err)
	}
}
