// SPDX-License-Identifier: GPL-2.0-or-later

package fsroot_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

// tree makes root/ with a file, a subdirectory and symlinks of every kind
// next to outside/, which nothing done through the root may reach.
func tree(t *testing.T) (root *fsroot.Root, dir, outside string) {
	t.Helper()
	base := t.TempDir()
	dir, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{dir, outside, filepath.Join(dir, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "file"), "inside")
	write(t, filepath.Join(outside, "secret"), "outside")
	links := map[string]string{
		"abs-out":   filepath.Join(outside, "secret"),
		"rel-out":   "../outside/secret",
		"dir-out":   "../outside",
		"rel-in":    "sub/../file",
		"abs-in":    filepath.Join(dir, "file"),
		"magic":     "/proc/self/root" + filepath.Join(outside, "secret"),
		"sub/up-in": "../file",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir, outside
}

func write(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenStaysBeneath(t *testing.T) {
	r, _, _ := tree(t)
	tests := []struct {
		name string
		flag int
		want string // content, or "" when the open must fail
	}{
		{"file", os.O_RDONLY, "inside"},
		{"sub/../file", os.O_RDONLY, "inside"},
		{"rel-in", os.O_RDONLY, ""}, // links that stay beneath are refused too
		{"sub/up-in", os.O_RDONLY, ""},
		{"rel-in", os.O_RDONLY | unix.O_NOFOLLOW, ""},
		{"../outside/secret", os.O_RDONLY, ""},
		{"sub/../../outside/secret", os.O_RDONLY, ""},
		{"abs-out", os.O_RDONLY, ""},
		{"rel-out", os.O_RDONLY, ""},
		{"dir-out/secret", os.O_RDONLY, ""},
		{"abs-in", os.O_RDONLY, ""}, // absolute links are refused even when they point inside
		{"magic", os.O_RDONLY, ""},
		{"/etc/passwd", os.O_RDONLY, ""},
		{"", os.O_RDONLY, ""},
		{"rel-out", os.O_WRONLY | os.O_TRUNC, ""},
		{"dir-out/new", os.O_WRONLY | os.O_CREATE, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := r.OpenFile(tt.name, tt.flag, 0o600)
			if tt.want == "" {
				if err == nil {
					f.Close()
					t.Fatalf("OpenFile(%q) succeeded, want refusal", tt.name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			data, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.want {
				t.Errorf("read %q through %q, want %q", data, tt.name, tt.want)
			}
		})
	}
}

func TestOpenCreatesBeneath(t *testing.T) {
	r, dir, _ := tree(t)
	f, err := r.OpenFile("sub/new", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := os.Stat(filepath.Join(dir, "sub/new"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o640&^umask() {
		t.Errorf("mode %v, want %v", info.Mode().Perm(), fs.FileMode(0o640&^umask()))
	}
	if f.Name() != filepath.Join(dir, "sub/new") {
		t.Errorf("Name() = %q, want the joined path", f.Name())
	}
}

func umask() fs.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return fs.FileMode(m)
}

func TestLastComponentIsNeverFollowed(t *testing.T) {
	r, dir, outside := tree(t)
	secret := filepath.Join(outside, "secret")
	before, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}

	info, err := r.Lstat("abs-out")
	if err != nil || info.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(abs-out) = %v, %v; want the symlink itself", info, err)
	}
	if _, err := r.Stat("abs-out"); err == nil {
		t.Error("Stat(abs-out) followed a link out of the root")
	}
	if _, err := r.Stat("rel-in"); err == nil {
		t.Error("Stat(rel-in) followed a link that stays beneath the root")
	}
	old := time.Unix(1000, 0)
	if err := r.Chtimes("rel-out", old, old); err != nil {
		t.Errorf("Chtimes(rel-out): %v", err)
	}
	if err := r.Link("abs-out", "linked"); err != nil {
		t.Errorf("Link(abs-out): %v", err)
	}
	if info, err := os.Lstat(filepath.Join(dir, "linked")); err != nil || info.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Link made %v, %v; want a link to the symlink, not to its target", info, err)
	}
	if err := r.Rename("rel-out", "sub/moved"); err != nil {
		t.Errorf("Rename(rel-out): %v", err)
	}
	for _, name := range []string{"abs-out", "linked", "sub/moved", "dir-out"} {
		if err := r.Remove(name); err != nil {
			t.Errorf("Remove(%s): %v", name, err)
		}
	}

	after, err := os.Stat(secret)
	if err != nil {
		t.Fatalf("the outside file is gone: %v", err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the outside file's mtime changed: %v to %v", before.ModTime(), after.ModTime())
	}
	if st := after.Sys().(*syscall.Stat_t); st.Nlink != 1 {
		t.Errorf("the outside file has %d links, want 1", st.Nlink)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the outside directory is gone: %v", err)
	}
}

func TestChangesStayBeneath(t *testing.T) {
	r, _, _ := tree(t)
	tests := []struct {
		op  string
		run func() error
	}{
		{"mkdir through a link", func() error { return r.Mkdir("dir-out/new", 0o700) }},
		{"mkdir above", func() error { return r.Mkdir("../new", 0o700) }},
		{"remove through a link", func() error { return r.Remove("dir-out/secret") }},
		{"remove above", func() error { return r.Remove("../outside/secret") }},
		{"remove dot-dot", func() error { return r.Remove("sub/..") }},
		{"rename out", func() error { return r.Rename("file", "../outside/file") }},
		{"rename in", func() error { return r.Rename("../outside/secret", "stolen") }},
		{"link out", func() error { return r.Link("file", "dir-out/file") }},
		{"link in", func() error { return r.Link("dir-out/secret", "stolen") }},
		{"chtimes through a link", func() error { return r.Chtimes("dir-out/secret", time.Unix(0, 0), time.Unix(0, 0)) }},
		{"absolute", func() error { return r.Remove("/tmp/x") }},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			err := tt.run()
			if err == nil {
				t.Fatal("succeeded, want refusal")
			}
			var pe *fs.PathError
			if !errors.As(err, &pe) {
				t.Errorf("error %v is not a *fs.PathError", err)
			}
		})
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	r, _, _ := tree(t)
	if _, err := r.Open("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
	if err := r.Remove("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove(missing) = %v, want ErrNotExist", err)
	}
	if err := r.Mkdir("sub", 0o700); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Mkdir(sub) = %v, want ErrExist", err)
	}
	if err := r.Remove("sub"); !errors.Is(err, unix.ENOTEMPTY) {
		t.Errorf("Remove(sub) = %v, want ENOTEMPTY", err)
	}
	if err := r.Mkdir("sub/empty", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove("sub/empty"); err != nil {
		t.Errorf("Remove(sub/empty) = %v", err)
	}
}

func TestRootSurvivesItsPathBeingReplaced(t *testing.T) {
	r, dir, outside := tree(t)
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, dir); err != nil {
		t.Fatal(err)
	}
	f, err := r.Open("file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 16)
	n, _ := f.Read(data)
	if string(data[:n]) != "inside" {
		t.Errorf("read %q, want the original directory's file", data[:n])
	}
}

// A released root keeps no descriptor open and opens its directory again
// at the next lookup, but never another directory made at its path.
func TestReleasedRootReopensOnlyItsDirectory(t *testing.T) {
	r, dir, outside := tree(t)
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if held := openUnder(t, dir); len(held) != 0 {
		t.Fatalf("a released root holds %v", held)
	}
	if _, err := r.Stat("file"); err != nil {
		t.Fatalf("Stat after Release = %v", err)
	}
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Stat("file"); !errors.Is(err, unix.ESTALE) {
		t.Fatalf("Stat with another directory at the root's path = %v, want ESTALE", err)
	}
}

// openUnder lists the descriptors of this process open on paths under
// dir.
func openUnder(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && (link == dir || strings.HasPrefix(link, dir+"/")) {
			held = append(held, link)
		}
	}
	return held
}

// A FIFO, planted where a file or directory is expected, is refused at
// once instead of blocking until its other end is opened.
func TestOpenRefusesFIFOsWithoutBlocking(t *testing.T) {
	r, dir, _ := tree(t)
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []int{os.O_RDONLY, os.O_WRONLY, os.O_RDWR} {
		done := make(chan error, 1)
		go func() {
			f, err := r.OpenFile("fifo", flag, 0)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, fsroot.ErrNotFileOrDir) {
				t.Errorf("OpenFile(fifo, %#o) = %v, want ErrNotFileOrDir", flag, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("OpenFile(fifo, %#o) blocked", flag)
		}
	}
	f, err := r.Open("file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Errorf("a regular file is left non-blocking: flags %#o, %v", fl, err)
	}
}
