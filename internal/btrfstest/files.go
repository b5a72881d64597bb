// SPDX-License-Identifier: GPL-2.0-or-later

package btrfstest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// Text is n bytes of compressible text that differs per seed, as an
// image's used blocks may hold.
func Text(seed string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s line %d: the quick brown fox jumps over the lazy dog\n", seed, i)
	}
	return b.Bytes()[:n]
}

// WriteAt writes data at off in the existing file at path.
func WriteAt(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// Digest is the SHA-256 of the file at path: what a test compares to
// prove an image's content survived.
func Digest(t testing.TB, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// SetFlags sets and clears inode flags (chattr) of the file at path.
func SetFlags(t testing.TB, path string, set, clear uint32) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := btrfs.Flags(f)
	if err == nil {
		err = btrfs.SetFlags(f, flags&^clear|set)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// WriteWithFlag writes data to a new file at path with the inode flag
// set: no-COW before the data (btrfs takes it only on an empty file), the
// others after it. Immutable and append-only are cleared again when the
// test ends, so that the file can go.
func WriteWithFlag(t testing.TB, path string, data []byte, flag uint32) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if flag == btrfs.FlagNoCOW {
		SetFlags(t, path, flag, 0)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if flag != 0 && flag != btrfs.FlagNoCOW {
		SetFlags(t, path, flag, 0)
		t.Cleanup(func() { SetFlags(t, path, 0, btrfs.FlagImmutable|btrfs.FlagAppend) })
	}
}
