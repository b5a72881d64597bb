// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

const fileSize = 64 * bucketBytes

func openFile(t *testing.T, path string, size uint64) (*File, Opened) {
	t.Helper()
	f, how, err := openPath(t, path, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, how
}

// openPath opens the index at path through a root at its directory.
func openPath(t testing.TB, path string, size uint64) (*File, Opened, error) {
	t.Helper()
	root, err := fsroot.Open(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return Open(root, filepath.Base(path), size)
}

func TestOpenFlushReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dedup.idx")
	f, how := openFile(t, path, fileSize)
	if how != (Opened{Created: true}) {
		t.Fatalf("first Open: %+v", how)
	}
	for i := range 1000 {
		f.Insert(spread(i), addr(i))
	}
	f.MarkUseful(0, addr(0))
	if n, err := f.Flush(); err != nil || n == 0 {
		t.Fatalf("Flush after inserts wrote %d bytes: %v", n, err)
	}
	// Nothing changed since: nothing to write, and no sync.
	if n, err := f.Flush(); err != nil || n != 0 {
		t.Fatalf("second Flush wrote %d bytes: %v", n, err)
	}
	f.Erase(spread(1), addr(1))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != encodedLen(fileSize) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file after Close: %v, %v", fi, err)
	}
	if _, err := f.Flush(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}

	g, how := openFile(t, path, fileSize)
	if how != (Opened{}) {
		t.Fatalf("reopen: %+v", how)
	}
	if !slices.Equal(f.table, g.table) {
		t.Fatal("reopened index differs")
	}
	if g.Lookup(nil, spread(1)) != nil || g.Lookup(nil, spread(2)) == nil {
		t.Fatal("erase or insert lost")
	}
}

func TestOpenSetsCorruptFileAside(t *testing.T) {
	for _, tc := range []struct {
		name string
		harm func(path string) error
	}{
		{"flipped byte", func(path string) error {
			b, err := os.ReadFile(path)
			if err == nil {
				b[headerBytes+5*bucketBytes+17] ^= 0x40
				err = os.WriteFile(path, b, 0o600)
			}
			return err
		}},
		{"truncated", func(path string) error { return os.Truncate(path, headerBytes+3*bucketBytes) }},
		{"trailing bytes", func(path string) error { return os.Truncate(path, encodedLen(fileSize)+1) }},
		{"not an index", func(path string) error { return os.WriteFile(path, []byte("hello"), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dedup.idx")
			f, _ := openFile(t, path, fileSize)
			f.Insert(5, addr(5))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := tc.harm(path); err != nil {
				t.Fatal(err)
			}
			g, how := openFile(t, path, fileSize)
			if !how.Created || how.SetAside != path+".corrupt" || !errors.Is(how.Corrupt, ErrCorrupt) {
				t.Fatalf("Open of a corrupt file: %+v", how)
			}
			if _, used, _, _, _, _ := g.Stats(); used != 0 {
				t.Fatalf("fresh index holds %d cells", used)
			}
			if _, err := os.Stat(how.SetAside); err != nil {
				t.Fatal(err)
			}
			h, how, err := openPath(t, path, fileSize)
			if err != nil || how != (Opened{}) {
				t.Fatalf("Open of the fresh file: %+v, %v", how, err)
			}
			h.Close()
		})
	}
}

func TestOpenResizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dedup.idx")
	f, _ := openFile(t, path, fileSize)
	f.Insert(12345, addr(1))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, how := openFile(t, path, 2*fileSize)
	if how != (Opened{Resized: true}) || g.Size() != 2*fileSize {
		t.Fatalf("Open with another size: %+v, size %d", how, g.Size())
	}
	if got := g.Lookup(nil, 12345); !slices.Equal(got, []uint64{addr(1)}) {
		t.Fatalf("Lookup after resize = %v", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != encodedLen(2*fileSize) {
		t.Fatalf("resized file: %v, %v", fi, err)
	}
}

func TestOpenRemovesLeftover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dedup.idx")
	if err := os.WriteFile(path+".new", []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	openFile(t, path, fileSize)
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temporary file: %v", err)
	}
}

func TestOpenRejectsBadSize(t *testing.T) {
	if _, _, err := openPath(t, filepath.Join(t.TempDir(), "dedup.idx"), 1000); err == nil {
		t.Fatal("Open with a size of 1000 succeeded")
	}
}

// The index file is overwritten where it lies: all its space is taken
// when it is made, written rather than preallocated, and a flush moves
// none of its extents, so writing the index back never needs new space
// nor splits an extent under a du of the pool. A file written
// copy-on-write or preallocated (before this was so) is written anew on
// Open.
func TestFileIsOverwrittenInPlace(t *testing.T) {
	tests := []struct {
		name          string
		before        func(t *testing.T, path string)
		wantRewritten bool
	}{
		{"new", func(*testing.T, string) {}, false},
		{"written copy-on-write", func(t *testing.T, path string) {
			x, err := New(32 << 20)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := x.WriteTo(f); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"preallocated", func(t *testing.T, path string) {
			x, err := New(32 << 20)
			if err != nil {
				t.Fatal(err)
			}
			var img bytes.Buffer
			if _, err := x.WriteTo(&img); err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := noCOW(f); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(img.Len())); err != nil {
				t.Fatal(err)
			}
			// What an older version wrote: the blocks that are not zeros.
			for off := 0; off < img.Len(); off += bucketBytes {
				b := img.Bytes()[off:min(off+bucketBytes, img.Len())]
				if !bytes.Equal(b, make([]byte, len(b))) {
					if _, err := f.WriteAt(b, int64(off)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(btrfstest.Mount(t, 0), "dedup.idx")
			tt.before(t, path)
			f, how := openFile(t, path, 32<<20)
			if how.Rewritten != tt.wantRewritten {
				t.Fatalf("Open: %+v, want Rewritten %v", how, tt.wantRewritten)
			}
			if flags, err := btrfs.Flags(f.f); err != nil || flags&btrfs.FlagNoCOW == 0 {
				t.Fatalf("flags %#x, %v: want no-COW", flags, err)
			}
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 < st.Size {
				t.Fatalf("size %d, allocated %d: want it all allocated", st.Size, st.Blocks*512)
			}
			// The disk extents holding the file.
			extents := func() map[uint64]bool {
				btrfstest.Sync(t, filepath.Dir(path))
				at := map[uint64]bool{}
				for _, e := range btrfstest.Extents(t, path) {
					if e.Type == btrfs.ExtentPrealloc {
						t.Fatalf("preallocated extent %+v", e)
					}
					at[e.DiskBytenr] = true
				}
				return at
			}
			before := extents()
			for i := range 100000 {
				f.Insert(spread(i), addr(i))
			}
			if _, err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			for at := range extents() {
				if !before[at] {
					t.Fatalf("a flush wrote a new extent at %d; the file was in %v", at, before)
				}
			}
		})
	}
}

// A header read from disk must not decide how much memory the daemon
// takes: a crafted header with a valid checksum and a huge size is set
// aside as corrupt before anything of that size is allocated, whatever
// the file's length.
func TestOpenBoundsHeaderSize(t *testing.T) {
	const huge = 1 << 44
	for _, tc := range []struct {
		name           string
		size, nbuckets uint64
		length         int64 // of the file; the header alone if 0
	}{
		{name: "huge size, header only", size: huge, nbuckets: huge / bucketBytes},
		{name: "1 GiB size, header only", size: 1 << 30, nbuckets: 1 << 30 / bucketBytes},
		{name: "1 GiB size, sparse file of that length", size: 1 << 30, nbuckets: 1 << 30 / bucketBytes, length: encodedLen(1 << 30)},
		{name: "size over the file's length", size: 4 * fileSize, nbuckets: 4 * fileSize / bucketBytes, length: encodedLen(fileSize)},
		{name: "size under the file's length", size: fileSize, nbuckets: fileSize / bucketBytes, length: encodedLen(2 * fileSize)},
		{name: "bucket count disagrees", size: fileSize, nbuckets: fileSize/bucketBytes + 1, length: encodedLen(fileSize)},
		{name: "truncated", size: fileSize, nbuckets: fileSize / bucketBytes, length: headerBytes + 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dedup.idx")
			h := make([]byte, headerBytes)
			copy(h, magic)
			binary.LittleEndian.PutUint32(h[8:], version)
			binary.LittleEndian.PutUint32(h[12:], bucketBytes)
			binary.LittleEndian.PutUint64(h[16:], tc.size)
			binary.LittleEndian.PutUint64(h[24:], tc.nbuckets)
			binary.LittleEndian.PutUint64(h[32:], xxhash.Sum64(h[:32]))
			if err := os.WriteFile(path, h, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.length != 0 {
				if err := os.Truncate(path, tc.length); err != nil {
					t.Fatal(err)
				}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f, how, err := openPath(t, path, fileSize)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if !how.Created || !errors.Is(how.Corrupt, ErrCorrupt) || f.Size() != fileSize {
				t.Errorf("Open of a crafted header: %+v, size %d; want a fresh index set up in its place", how, f.Size())
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
				t.Errorf("Open allocated %d bytes for an index of %d", n, fileSize)
			}
		})
	}
}

// A detached index is taken up again without reading its file only when
// the file is as Detach left it; anything done to the file meanwhile
// makes Attach refuse, and the caller reads it anew.
func TestDetachAttach(t *testing.T) {
	for _, tc := range []struct {
		name     string
		meddle   func(t *testing.T, path string)
		wantSame bool
	}{
		{"untouched", func(*testing.T, string) {}, true},
		{"written", func(t *testing.T, path string) {
			// File times come from a coarse clock: let it tick past
			// Detach's write back, as any later write would.
			time.Sleep(20 * time.Millisecond)
			btrfstest.WriteAt(t, path, headerBytes, make([]byte, 8))
		}, false},
		{"replaced", func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".other", data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".other", path); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dedup.idx")
			f, _ := openFile(t, path, fileSize)
			f.Insert(spread(1), addr(1))
			if err := f.Detach(); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Flush(); err != nil {
				t.Fatalf("flush of a detached index: %v", err)
			}
			tc.meddle(t, path)
			root, err := fsroot.Open(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			same, err := f.Attach(root, filepath.Base(path))
			if err != nil || same != tc.wantSame {
				t.Fatalf("Attach = %v, %v; want %v", same, err, tc.wantSame)
			}
			if !same {
				return
			}
			// Attached, it writes back where it did before.
			f.Insert(spread(2), addr(2))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			g, how := openFile(t, path, fileSize)
			if how != (Opened{}) || !slices.Contains(g.Lookup(nil, spread(2)), addr(2)) || !slices.Contains(g.Lookup(nil, spread(1)), addr(1)) {
				t.Fatalf("reopened %+v: the entries made before and after Detach are not both there", how)
			}
		})
	}
}
