package dedupindex

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

const fileSize = 64 * bucketBytes

func openFile(t *testing.T, path string, size uint64) (*File, Opened) {
	t.Helper()
	f, how, err := Open(path, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, how
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
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Erase(spread(1), addr(1))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != encodedLen(fileSize) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file after Close: %v, %v", fi, err)
	}
	if err := f.Flush(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}

	g, how := openFile(t, path, fileSize)
	if how != (Opened{}) {
		t.Fatalf("reopen: %+v", how)
	}
	if !slices.Equal(f.table, g.table) {
		t.Fatal("reopened index differs")
	}
	if g.Lookup(spread(1)) != nil || g.Lookup(spread(2)) == nil {
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
			h, how, err := Open(path, fileSize)
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
	if got := g.Lookup(12345); !slices.Equal(got, []uint64{addr(1)}) {
		t.Fatalf("Lookup after resize = %v", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != encodedLen(2*fileSize) {
		t.Fatalf("resized file: %v, %v", fi, err)
	}
}

func TestOpenRemovesLeftover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dedup.idx")
	if err := os.WriteFile(tempPath(path), []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	openFile(t, path, fileSize)
	if _, err := os.Stat(tempPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temporary file: %v", err)
	}
}

func TestOpenRejectsBadSize(t *testing.T) {
	if _, _, err := Open(filepath.Join(t.TempDir(), "dedup.idx"), 1000); err == nil {
		t.Fatal("Open with a size of 1000 succeeded")
	}
}

func TestNewFileIsSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dedup.idx")
	f, _, err := Open(path, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size < 32<<20 || st.Blocks*512 > 1<<20 {
		t.Fatalf("new index: size %d, allocated %d: not sparse", st.Size, st.Blocks*512)
	}
}
