package main

import (
	"bytes"
	"crypto/sha256"
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

	var out, errOut bytes.Buffer
	if code := run([]string{"compress", dir}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "saved") || !strings.Contains(out.String(), "zstd") {
		t.Errorf("report:\n%s", out.String())
	}
	for p, want := range sums {
		data, _ := os.ReadFile(p)
		if sha256.Sum256(data) != want {
			t.Fatalf("%s changed content", p)
		}
	}
	// Range defrag is best effort and may skip busy pages under load; a
	// second run picks up the rest, so most, not all, must be zstd now.
	r, err := usage.Measure([]string{lone})
	if err != nil || zstdReferenced(r)*2 < uint64(len(text)) {
		t.Errorf("lone file not compressed: %+v %v", r, err)
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
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := btrfs.Flags(f)
	if err == nil {
		err = btrfs.SetFlags(f, flags|btrfs.FlagNoCompress)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func zstdReferenced(r usage.Report) uint64 {
	for _, row := range r.ByType {
		if row.Type == "zstd" {
			return row.ReferencedBytes
		}
	}
	return 0
}
