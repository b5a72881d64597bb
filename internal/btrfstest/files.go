// SPDX-License-Identifier: GPL-2.0-or-later

package btrfstest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"testing"
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
