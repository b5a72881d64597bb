// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
)

func TestCompressKeepsSharingAndClearsNoCompress(t *testing.T) {
	mnt := btrfstest.Mount(t, 512<<20)
	dir := filepath.Join(mnt, "usr")
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("libfoo.so.1 => /usr/lib/libfoo.so.1 (0x00007f)\n"), 200000)
	lone, shared := filepath.Join(dir, "lib", "lone"), filepath.Join(dir, "a")
	for _, p := range []string{lone, shared} {
		if err := os.WriteFile(p, text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyPath := filepath.Join(mnt, "copy-of-a") // outside the tree, shares with a
	btrfstest.Reflink(t, shared, copyPath)
	setNoCompress(t, lone)
	sums := map[string][32]byte{lone: sha256.Sum256(text), shared: sha256.Sum256(text)}
	pair, err := usage.Measure([]string{shared, copyPath})
	if err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", "compress", dir)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "saved") || !strings.Contains(r.stdout, "zstd") {
		t.Errorf("report:\n%s", r.stdout)
	}
	for p, want := range sums {
		data, _ := os.ReadFile(p)
		if sha256.Sum256(data) != want {
			t.Fatalf("%s changed content", p)
		}
	}
	// Range defrag is best effort and may skip busy pages under load; a
	// second run picks up the rest, so most, not all, must be zstd now.
	u, err := usage.Measure([]string{lone})
	if err != nil || zstdReferenced(u)*2 < uint64(len(text)) {
		t.Errorf("lone file not compressed: %+v %v", u, err)
	}
	after, err := usage.Measure([]string{shared, copyPath})
	if err != nil || after.Total != pair.Total {
		t.Errorf("reflinked pair changed: %+v -> %+v (%v)", pair.Total, after.Total, err)
	}
	f, _ := os.Open(lone)
	defer f.Close()
	if flags, err := btrfs.Flags(f); err != nil || flags&btrfs.FlagNoCompress != 0 {
		t.Errorf("NOCOMPRESS still set: %x %v", flags, err)
	}
}

func setNoCompress(t *testing.T, path string) {
	t.Helper()
	btrfstest.SetFlags(t, path, btrfs.FlagNoCompress, 0)
}

func zstdReferenced(r usage.Report) uint64 {
	for _, row := range r.ByType {
		if row.Type == "zstd" {
			return row.ReferencedBytes
		}
	}
	return 0
}

// Files compress cannot work on (a journal is no-COW, some files are
// immutable or append-only) are skipped with their reason, and the rest of
// the tree is still compressed.
func TestCompressSkipsWhatItCannotCompress(t *testing.T) {
	mnt := btrfstest.Mount(t, 512<<20)
	dir := filepath.Join(mnt, "var")
	text := compressible(4<<20, "log")
	// WalkDir goes in lexical order: the skipped files come first, so a
	// run that stopped at them would never reach "z-plain".
	files := map[string]uint32{"a-journal": btrfs.FlagNoCOW, "b-immutable": btrfs.FlagImmutable, "c-append": btrfs.FlagAppend, "z-plain": 0}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, flag := range files {
		btrfstest.WriteWithFlag(t, filepath.Join(dir, name), text, flag)
	}
	t.Cleanup(func() { // immutable and append-only files cannot be removed
		for name := range files {
			btrfstest.SetFlags(t, filepath.Join(dir, name), 0, btrfs.FlagImmutable|btrfs.FlagAppend)
		}
	})

	r := cli(t, "", "compress", "--json", dir)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	var report compressReport
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a-journal": "no-COW", "b-immutable": "immutable", "c-append": "append-only"}
	if len(report.Skipped) != len(want) {
		t.Fatalf("skipped %+v, want %v", report.Skipped, want)
	}
	for _, s := range report.Skipped {
		if reason := want[filepath.Base(s.Path)]; reason == "" || !strings.Contains(s.Reason, reason) {
			t.Errorf("skipped %s: %q, want %q", s.Path, s.Reason, reason)
		}
	}
	// Reached: it has the property (how much range defrag compressed under
	// load is another test's business).
	plain, err := os.Open(filepath.Join(dir, "z-plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if algo, err := btrfs.CompressionProperty(plain); err != nil || algo != "zstd" || report.BytesExamined == 0 {
		t.Errorf("the file after the skipped ones was not reached: property %q (%v), %d bytes examined", algo, err, report.BytesExamined)
	}
	text2 := cli(t, "", "compress", dir)
	for _, want := range []string{"skipped 3 files it cannot compress:", "a-journal: no-COW", "b-immutable: immutable (chattr +i)"} {
		if text2.code != exitOK || !strings.Contains(text2.stdout, want) {
			t.Errorf("summary lacks %q (exit %d):\n%s", want, text2.code, text2.stdout)
		}
	}
}

// compress on another filesystem says so, in the user's words.
func TestCompressNotOnBtrfs(t *testing.T) {
	dir := btrfstest.Tmpfs(t)
	r := cli(t, "", "compress", dir)
	if r.code != exitFailure || !strings.Contains(r.stderr, dir+": not on btrfs") || strings.Contains(r.stderr, "ioctl") {
		t.Fatalf("exit %d, stderr %q; want 1 and \"not on btrfs\"", r.code, r.stderr)
	}
}
