// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestResolve: index addresses of uncompressed and compressed blocks lead
// to every pool file holding them, at the right offset, and to nothing
// outside the pool's volume files.
func TestResolve(t *testing.T) {
	p, dir := openTestPool(t, "appvms/a", "appvms/b")
	path := func(rel string) string { return filepath.Join(dir, rel) }
	rng := rand.New(rand.NewPCG(1, 2))
	plain := make([]byte, mib)
	for i := range plain {
		plain[i] = byte(rng.Uint32())
	}
	packed := bytes.Repeat([]byte("compressible text, block after block. "), 128<<10/38+1)[:128<<10]

	// a's image holds plain at 1 MiB; its revision is a reflink; its dirty
	// image and a file outside the volumes reflink it too.
	img := path("appvms/a/private.img")
	writeFile(t, img, 1*mib, plain, false)
	for _, name := range []string{"appvms/a/private.img.1@2025-01-01T00:00:00Z", "appvms/a/private-dirty.img", "other"} {
		btrfstest.Reflink(t, img, path(name))
	}
	// b's image holds packed, compressed, at 64 KiB.
	bimg := path("appvms/b/private.img")
	writeFile(t, bimg, 64<<10, packed, true)
	btrfstest.Sync(t, dir)
	pe, ce := onlyExtentOf(t, img), onlyExtentOf(t, bimg)
	if ce.Compression == btrfs.CompressNone {
		t.Fatalf("b's extent %+v is not compressed", ce)
	}

	r, err := p.newResolver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	addr := func(bytenr uint64, compressed bool, eo uint64) uint64 {
		a, ok := dedupindex.BlockAddr(bytenr, compressed, eo)
		if !ok {
			t.Fatalf("no address for block %d of extent %d", eo, bytenr)
		}
		return a
	}
	open := func(file volume.File) (*os.File, error) {
		f, err := p.Volumes.Open(file)
		if err == nil {
			opened = append(opened, f)
		}
		return f, err
	}
	// at is where a source lies, by the file's name.
	type at struct {
		name   string
		kind   volume.FileKind
		offset uint64
	}
	for _, tc := range []struct {
		name string
		addr uint64
		want []at
		data []byte
	}{
		{"uncompressed block", addr(pe.DiskBytenr, false, 5*blockSize),
			[]at{{"appvms/a/private.img", volume.CleanFile, 1*mib + 5*blockSize},
				{"appvms/a/private.img.1@2025-01-01T00:00:00Z", volume.RevisionFile, 1*mib + 5*blockSize}},
			plain[5*blockSize : 6*blockSize]},
		{"compressed block 0", addr(ce.DiskBytenr, true, 0), []at{{"appvms/b/private.img", volume.CleanFile, 64 << 10}}, packed[:blockSize]},
		{"compressed block 9", addr(ce.DiskBytenr, true, 9*blockSize), []at{{"appvms/b/private.img", volume.CleanFile, 64<<10 + 9*blockSize}},
			packed[9*blockSize : 10*blockSize]},
		{"nothing there", 4096, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcs := r.resolve(tc.addr, open)
			var got []at
			for _, src := range srcs {
				got = append(got, at{src.file.Name(), src.file.Kind(), src.offset})
			}
			slices.SortFunc(got, func(a, b at) int { return strings.Compare(a.name, b.name) })
			if !slices.Equal(got, tc.want) {
				t.Fatalf("resolve = %+v, want %+v", got, tc.want)
			}
			for _, src := range srcs {
				if b := readAt(t, p.Volumes.Path(src.file), src.offset, blockSize); !bytes.Equal(b, tc.data) {
					t.Errorf("%s at %d holds other bytes", src.file, src.offset)
				}
			}
		})
	}
}

// openTestPool opens a pool on a new btrfs, with dirs made beneath its
// directory, which it returns too; both go when the test ends.
func openTestPool(t *testing.T, dirs ...string) (*Pool, string) {
	t.Helper()
	dir := filepath.Join(btrfstest.Mount(t, 1<<30), "pool")
	for _, d := range append([]string{"."}, dirs...) {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := OpenTestPool(t, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func writeFile(t *testing.T, name string, off int64, data []byte, compress bool) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if compress {
		if err := btrfs.SetCompressionProperty(f, "zstd"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func onlyExtentOf(t *testing.T, name string) btrfs.Extent {
	t.Helper()
	exts := btrfstest.Extents(t, name)
	if len(exts) != 1 {
		t.Fatalf("extents of %s: %+v; want one", name, exts)
	}
	return exts[0]
}

func readAt(t *testing.T, name string, off uint64, n int) []byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
	return b
}
