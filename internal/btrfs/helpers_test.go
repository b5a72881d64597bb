// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// textData returns n bytes of compressible, seed-dependent text.
func textData(n int, seed int) []byte {
	b := make([]byte, 0, n+64)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "line %08d of test data set %d: the quick brown fox\n", i, seed)
	}
	return b[:n]
}

// randomData returns n incompressible bytes, the same for the same seed.
func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

// create makes name with data, fsynced so its extents exist, and returns
// it open for reading and writing; it is closed at cleanup.
func create(t *testing.T, name string, data []byte) *os.File {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeAt overwrites part of f and fsyncs it.
func writeAt(t *testing.T, f *os.File, data []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// checksum is the sha256 of f's whole content.
func checksum(t *testing.T, f *os.File) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// extents lists f's extents with the given minimum generation.
func extents(t *testing.T, f *os.File, minGen uint64) []btrfs.Extent {
	t.Helper()
	ext, err := btrfs.Extents(f, minGen)
	if err != nil {
		t.Fatal(err)
	}
	return ext
}

// span is a file range [Off, End).
type span struct{ Off, End uint64 }

// spans merges the file ranges of ext into sorted, disjoint spans.
func spans(ext []btrfs.Extent) []span {
	var out []span
	for _, e := range ext {
		if n := len(out); n > 0 && out[n-1].End == e.Offset {
			out[n-1].End = e.Offset + e.Length
			continue
		}
		out = append(out, span{e.Offset, e.Offset + e.Length})
	}
	return out
}

// diskAddrs is the set of logical addresses f's extents point at.
func diskAddrs(ext []btrfs.Extent) map[uint64]bool {
	m := make(map[uint64]bool)
	for _, e := range ext {
		m[e.DiskBytenr] = true
	}
	return m
}

// uniqueDiskBytes is the disk space taken by the distinct data extents
// referenced by any of the lists, the way compsize counts it.
func uniqueDiskBytes(lists ...[]btrfs.Extent) uint64 {
	seen := make(map[uint64]bool)
	var n uint64
	for _, ext := range lists {
		for _, e := range ext {
			if e.DiskBytenr == 0 || seen[e.DiskBytenr] {
				continue
			}
			seen[e.DiskBytenr] = true
			n += e.DiskNumBytes
		}
	}
	return n
}

// mountBtrfs returns a fresh btrfs mount point.
func mountBtrfs(t *testing.T, opts ...string) string {
	t.Helper()
	return btrfstest.Mount(t, 0, opts...)
}

// inRange reports whether extent e lies within [off, end).
func inRange(e btrfs.Extent, off, end uint64) bool {
	return e.Offset >= off && e.Offset+e.Length <= end
}

// names returns the base names of the files in dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Base(e.Name()))
	}
	slices.Sort(out)
	return out
}

// openFile opens name for reading and writing; it is closed at cleanup.
func openFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// sha is the sha256 of data.
func sha(data []byte) [32]byte { return sha256.Sum256(data) }

// mkdir creates a directory.
func mkdir(name string) error { return os.Mkdir(name, 0o700) }
