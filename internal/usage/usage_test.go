// SPDX-License-Identifier: GPL-2.0-or-later

package usage_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// textData returns n bytes of compressible, seed-dependent text.
func textData(n, seed int) []byte {
	b := make([]byte, 0, n+64)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "line %08d of usage test data %d: the quick brown fox\n", i, seed)
	}
	return b[:n]
}

// randomData returns n incompressible bytes, the same for the same seed.
func randomData(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// files builds the test files in dir, each step on the files before it.
type files struct {
	t   *testing.T
	dir string
}

func (fs files) path(name string) string { return filepath.Join(fs.dir, name) }

func (fs files) open(name string, flag int) *os.File {
	fs.t.Helper()
	f, err := os.OpenFile(fs.path(name), flag, 0o600)
	if err != nil {
		fs.t.Fatal(err)
	}
	return f
}

// write creates name (or writes into it) at off and fsyncs it.
func (fs files) write(name string, data []byte, off int64) {
	fs.t.Helper()
	f := fs.open(name, os.O_RDWR|os.O_CREATE)
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		fs.t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		fs.t.Fatal(err)
	}
}

// clone creates dst as a reflink of src.
func (fs files) clone(dst, src string) {
	fs.t.Helper()
	s := fs.open(src, os.O_RDONLY)
	defer s.Close()
	d := fs.open(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	defer d.Close()
	if err := btrfs.Clone(d, s); err != nil {
		fs.t.Fatal(err)
	}
}

// fallocate reserves [0, n) of a new file.
func (fs files) fallocate(name string, n int64) {
	fs.t.Helper()
	f := fs.open(name, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
		fs.t.Fatal(err)
	}
}

func (fs files) truncate(name string, n int64) {
	fs.t.Helper()
	if err := os.Truncate(fs.path(name), n); err != nil {
		fs.t.Fatal(err)
	}
}

// populate makes one file of every kind Measure has to handle.
func populate(t *testing.T, dir string) files {
	fs := files{t, dir}
	fs.write("text", textData(2*mib, 1), 0)
	fs.write("random", randomData(mib, 2), 0)
	fs.write("sparse", randomData(4*kib, 3), mib)
	fs.truncate("sparse", 4*mib)
	fs.write("inline", randomData(100, 4), 0)
	fs.write("inline-text", textData(1800, 5), 0)
	fs.fallocate("prealloc", mib)
	// Writing inside a prealloc extent turns that part into a regular
	// reference to the same extent.
	fs.fallocate("prealloc-written", mib)
	fs.write("prealloc-written", randomData(64*kib, 6), 512*kib)
	fs.clone("text-copy", "text")
	// A partial overwrite of a reflinked copy: bookend extents, and the
	// original extent referenced twice by the copy.
	fs.clone("random-copy", "random")
	fs.write("random-copy", randomData(128*kib, 7), 256*kib)
	fs.write("empty", nil, 0)
	if err := os.Mkdir(fs.path("sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	fs.clone("sub/text-copy", "text")
	fs.write("sub/nested", textData(192*kib, 8), 0)
	if err := os.Symlink("../random", fs.path("sub/link")); err != nil {
		t.Fatal(err)
	}
	btrfstest.Sync(fs.t, fs.dir)
	return fs
}

// compsize is what `compsize --bytes` printed, with a Report's names.
type compsize struct {
	files, extents, refs, inline uint64
	rows                         map[string]usage.Row // by type, "TOTAL" included
}

func runCompsize(t *testing.T, paths []string) compsize {
	t.Helper()
	out, err := exec.Command("compsize", append([]string{"--bytes"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("compsize %v: %v\n%s", paths, err, out)
	}
	c := compsize{rows: make(map[string]usage.Row)}
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "Processed %d file", &c.files); err == nil {
			_, err := fmt.Sscanf(line[strings.Index(line, ", ")+2:], "%d regular extents (%d refs), %d inline.",
				&c.extents, &c.refs, &c.inline)
			if err != nil {
				t.Fatalf("compsize summary %q: %v", line, err)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) != 5 || f[0] == "Type" {
			continue
		}
		var n [3]uint64
		for i := range n {
			if n[i], err = strconv.ParseUint(f[2+i], 10, 64); err != nil {
				t.Fatalf("compsize row %q: %v", line, err)
			}
		}
		c.rows[f[0]] = usage.Row{Type: f[0], DiskBytes: n[0], UncompressedBytes: n[1], ReferencedBytes: n[2]}
	}
	if _, ok := c.rows["TOTAL"]; !ok {
		t.Fatalf("no TOTAL row in compsize output:\n%s", out)
	}
	return c
}

// table renders both results side by side for failure messages.
func table(c compsize, r usage.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %28s | %s\n", "", "compsize disk/uncomp/refd", "Measure")
	for _, row := range append([]usage.Row{r.Total}, r.ByType...) {
		cr := c.rows[row.Type]
		fmt.Fprintf(&b, "%-9s %9d %9d %9d | %9d %9d %9d\n", row.Type,
			cr.DiskBytes, cr.UncompressedBytes, cr.ReferencedBytes,
			row.DiskBytes, row.UncompressedBytes, row.ReferencedBytes)
	}
	fmt.Fprintf(&b, "files/extents/refs/inline: %d %d %d %d | %d %d %d %d",
		c.files, c.extents, c.refs, c.inline, r.Files, r.Extents, r.Refs, r.Inline)
	return b.String()
}

// Measure gives exactly compsize's numbers, on a filesystem with and one
// without compression, for several file sets.
func TestMeasureMatchesCompsize(t *testing.T) {
	btrfstest.RequireCommands(t, "compsize")
	sets := []struct {
		name  string
		paths []string // relative to the mount; "." is the whole filesystem
	}{
		{"one file", []string{"text"}},
		{"file and reflink", []string{"text", "text-copy"}},
		{"partially overwritten reflink", []string{"random-copy"}},
		{"reflink pair with bookends", []string{"random", "random-copy"}},
		{"sparse and inline", []string{"sparse", "inline", "inline-text"}},
		{"prealloc", []string{"prealloc", "prealloc-written"}},
		{"subdirectory", []string{"sub"}},
		{"whole directory", []string{"."}},
	}
	mounts := []struct {
		name string
		opts []string
	}{
		{"uncompressed", nil},
		{"zstd", []string{"compress=zstd"}},
	}
	for _, mnt := range mounts {
		t.Run(mnt.name, func(t *testing.T) {
			dir := btrfstest.Mount(t, 0, mnt.opts...)
			populate(t, dir)
			for _, set := range sets {
				t.Run(set.name, func(t *testing.T) {
					var paths []string
					for _, p := range set.paths {
						paths = append(paths, filepath.Join(dir, p))
					}
					got, err := usage.Measure(paths)
					if err != nil {
						t.Fatal(err)
					}
					want := runCompsize(t, paths)
					t.Logf("\n%s", table(want, got))
					checkAgainst(t, want, got)
				})
			}
		})
	}
}

func checkAgainst(t *testing.T, want compsize, got usage.Report) {
	t.Helper()
	if got.Total != want.rows["TOTAL"] {
		t.Errorf("TOTAL = %+v, compsize %+v", got.Total, want.rows["TOTAL"])
	}
	mine := make(map[string]bool)
	for _, row := range got.ByType {
		mine[row.Type] = true
		cr, ok := want.rows[row.Type]
		switch {
		case !ok && row.UncompressedBytes != 0:
			t.Errorf("row %+v missing from compsize", row)
		case ok && row != cr:
			t.Errorf("row %+v, compsize %+v", row, cr)
		}
	}
	for typ := range want.rows {
		if typ != "TOTAL" && !mine[typ] {
			t.Errorf("compsize row %q missing from Measure", typ)
		}
	}
	counts := [4]uint64{got.Files, got.Extents, got.Refs, got.Inline}
	if wantCounts := [4]uint64{want.files, want.extents, want.refs, want.inline}; counts != wantCounts {
		t.Errorf("files, extents, refs, inline = %v, compsize %v", counts, wantCounts)
	}
	if got.SharedDiskBytes+got.ExclusiveDiskBytes != got.Total.DiskBytes {
		t.Errorf("shared %d + exclusive %d != disk %d", got.SharedDiskBytes, got.ExclusiveDiskBytes, got.Total.DiskBytes)
	}
}

// sharedOracle computes the disk bytes of the set's data extents that a
// file outside the set also references, from extent listings alone.
func sharedOracle(t *testing.T, dir string, set []string) uint64 {
	t.Helper()
	in := make(map[string]bool)
	for _, name := range set {
		in[name] = true
	}
	setExtents := make(map[uint64]uint64) // logical address -> disk bytes
	outside := make(map[uint64]bool)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		ext, err := btrfs.Extents(f, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, e := range ext {
			switch {
			case e.DiskBytenr == 0:
			case in[rel]:
				setExtents[e.DiskBytenr] = e.DiskNumBytes
			default:
				outside[e.DiskBytenr] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var shared uint64
	for addr, n := range setExtents {
		if outside[addr] {
			shared += n
		}
	}
	return shared
}

// Extents that files outside the set also reference are shared, the rest
// exclusive.
func TestMeasureSharedExclusive(t *testing.T) {
	dir := btrfstest.Mount(t, 0)
	fs := populate(t, dir)
	tests := []struct {
		name       string
		set        []string
		wantShared bool // whether any shared bytes are expected
	}{
		{"reflink partner outside", []string{"text"}, true},
		{"one of three reflinks", []string{"sub/text-copy"}, true},
		{"all three reflinks", []string{"text", "text-copy", "sub/text-copy"}, false},
		{"overwritten copy without its original", []string{"random-copy"}, true},
		{"original without its overwritten copy", []string{"random"}, true},
		{"reflink pair", []string{"random", "random-copy"}, false},
		{"unshared files", []string{"sub/nested", "prealloc-written", "sparse"}, false},
		{"inline only", []string{"inline", "inline-text"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var paths []string
			for _, p := range tt.set {
				paths = append(paths, fs.path(p))
			}
			r, err := usage.Measure(paths)
			if err != nil {
				t.Fatal(err)
			}
			want := sharedOracle(t, dir, tt.set)
			if r.SharedDiskBytes != want || (want > 0) != tt.wantShared {
				t.Errorf("SharedDiskBytes = %d, oracle %d, want shared: %v", r.SharedDiskBytes, want, tt.wantShared)
			}
			if r.ExclusiveDiskBytes != r.Total.DiskBytes-want {
				t.Errorf("ExclusiveDiskBytes = %d, want %d - %d", r.ExclusiveDiskBytes, r.Total.DiskBytes, want)
			}
		})
	}
}

// A file reached twice is measured once.
func TestMeasureCountsFilesOnce(t *testing.T) {
	dir := btrfstest.Mount(t, 0)
	fs := populate(t, dir)
	if err := os.Link(fs.path("random-copy"), fs.path("sub/hardlink")); err != nil {
		t.Fatal(err)
	}
	once, err := usage.Measure([]string{fs.path("random-copy")})
	if err != nil {
		t.Fatal(err)
	}
	twice, err := usage.Measure([]string{fs.path("random-copy"), fs.path("random-copy"), fs.path("sub/hardlink")})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(once) != fmt.Sprint(twice) {
		t.Errorf("measured twice: %+v, once: %+v", twice, once)
	}
}

func TestMeasureErrors(t *testing.T) {
	dir := btrfstest.Mount(t, 0)
	other := btrfstest.Mount(t, 0)
	tmp := btrfstest.Tmpfs(t)
	fs := populate(t, dir)
	files{t, other}.write("f", randomData(64*kib, 9), 0)
	files{t, tmp}.write("f", randomData(64*kib, 10), 0)
	if err := unix.Mkfifo(fs.path("fifo"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		paths   []string
		wantErr error
	}{
		{"missing", []string{fs.path("nothing")}, unix.ENOENT},
		{"two filesystems", []string{fs.path("text"), filepath.Join(other, "f")}, unix.EXDEV},
		{"not btrfs", []string{filepath.Join(tmp, "f")}, unix.ENOTTY},
		{"FIFO", []string{fs.path("fifo")}, nil}, // any error, without blocking
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := usage.Measure(tt.paths)
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Measure = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.paths[len(tt.paths)-1]) {
				t.Errorf("error %q does not name %s", err, tt.paths[len(tt.paths)-1])
			}
		})
	}

	// Inside a directory, the FIFO is skipped.
	if _, err := usage.Measure([]string{dir}); err != nil {
		t.Errorf("Measure of a directory with a FIFO: %v", err)
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		disk, uncomp uint64
		want         float64
	}{
		{0, 0, 0},
		{mib, mib, 1},
		{mib, 4 * mib, 0.25},
	}
	for _, tt := range tests {
		r := usage.Report{Total: usage.Row{DiskBytes: tt.disk, UncompressedBytes: tt.uncomp}}
		if got := r.Ratio(); got != tt.want {
			t.Errorf("Ratio of %d/%d = %v, want %v", tt.disk, tt.uncomp, got, tt.want)
		}
	}
}

// Totals, given the same files open, gives compsize's numbers without the
// sharing split, and refuses what is not a regular file.
func TestTotalsMatchCompsize(t *testing.T) {
	btrfstest.RequireCommands(t, "compsize")
	dir := btrfstest.Mount(t, 0, "compress=zstd")
	populate(t, dir)
	totals := usage.NewTotals()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := totals.Add(f); err != nil {
			return err
		}
		return totals.Add(f) // counted once
	})
	if err != nil {
		t.Fatal(err)
	}
	got := totals.Report()
	want := runCompsize(t, []string{dir})
	t.Logf("\n%s", table(want, got))
	if got.Total != want.rows["TOTAL"] {
		t.Errorf("TOTAL = %+v, compsize %+v", got.Total, want.rows["TOTAL"])
	}
	if got.Files != want.files || got.Extents != want.extents || got.Refs != want.refs {
		t.Errorf("files, extents, refs = %d %d %d, compsize %d %d %d", got.Files, got.Extents, got.Refs, want.files, want.extents, want.refs)
	}
	if got.SharedDiskBytes != 0 || got.ExclusiveDiskBytes != 0 {
		t.Errorf("shared %d, exclusive %d; want no split", got.SharedDiskBytes, got.ExclusiveDiskBytes)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := totals.Add(d); err == nil {
		t.Error("Add took a directory")
	}
}
