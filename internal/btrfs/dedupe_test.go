// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// dedupeCase is one Dedupe call: its source range and destinations, and
// what each destination must end up with.
type dedupeCase struct {
	src            string
	offset, length uint64
	dests          []btrfs.DedupeDest
	want           []uint64 // bytes deduped per destination
	wantErr        error    // wrapped in the error, nil for none
	errNames       string   // a file name the error must mention
	// keepsSpace is set when the deduplicated part is only a piece of a
	// destination extent: btrfs frees an extent only with its last
	// reference (bookend), so no space comes back.
	keepsSpace bool
}

func TestDedupe(t *testing.T) {
	mnt := mountBtrfs(t)
	tmp := btrfstest.Tmpfs(t)
	const size = 16 * mib
	data := textData(size, 40)
	differ := slices.Clone(data)
	differ[10*mib] ^= 1

	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) dedupeCase
	}{
		{"identical file", func(t *testing.T, dir string) dedupeCase {
			src := create(t, filepath.Join(dir, "src"), data)
			dst := create(t, filepath.Join(dir, "dst"), data)
			return dedupeCase{src: src.Name(), length: size,
				dests: []btrfs.DedupeDest{{File: dst}}, want: []uint64{size}}
		}},
		{"several destinations, one differs", func(t *testing.T, dir string) dedupeCase {
			src := create(t, filepath.Join(dir, "src"), data)
			a := create(t, filepath.Join(dir, "a"), data)
			b := create(t, filepath.Join(dir, "b"), differ)
			c := create(t, filepath.Join(dir, "c"), data)
			return dedupeCase{src: src.Name(), length: size,
				dests: []btrfs.DedupeDest{{File: a}, {File: b}, {File: c}},
				want:  []uint64{size, 0, size}}
		}},
		{"offsets inside the files", func(t *testing.T, dir string) dedupeCase {
			src := create(t, filepath.Join(dir, "src"), data)
			buf := randomData(8*mib, 41)
			copy(buf[4*mib:], data[2*mib:3*mib])
			dst := create(t, filepath.Join(dir, "dst"), buf)
			return dedupeCase{src: src.Name(), offset: 2 * mib, length: mib,
				dests: []btrfs.DedupeDest{{File: dst, Offset: 4 * mib}}, want: []uint64{mib},
				keepsSpace: true}
		}},
		{"more destinations than one call takes", func(t *testing.T, dir string) dedupeCase {
			const copies, block = 130, 64 * kib
			src := create(t, filepath.Join(dir, "src"), data[:block])
			dst := create(t, filepath.Join(dir, "dst"), slices.Repeat(data[:block], copies))
			c := dedupeCase{src: src.Name(), length: block}
			for i := range copies {
				c.dests = append(c.dests, btrfs.DedupeDest{File: dst, Offset: uint64(i * block)})
				c.want = append(c.want, block)
			}
			return c
		}},
		{"destination on another filesystem", func(t *testing.T, dir string) dedupeCase {
			src := create(t, filepath.Join(dir, "src"), data)
			dst := create(t, filepath.Join(dir, "dst"), data)
			other := create(t, filepath.Join(tmp, "other"), data)
			return dedupeCase{src: src.Name(), length: size,
				dests:   []btrfs.DedupeDest{{File: other}, {File: dst}},
				want:    []uint64{0, size},
				wantErr: unix.EXDEV, errNames: other.Name()}
		}},
		{"zero length", func(t *testing.T, dir string) dedupeCase {
			src := create(t, filepath.Join(dir, "src"), data)
			dst := create(t, filepath.Join(dir, "dst"), data)
			return dedupeCase{src: src.Name(), dests: []btrfs.DedupeDest{{File: dst}}, want: []uint64{0}}
		}},
		{"no destinations", func(t *testing.T, dir string) dedupeCase {
			src := create(t, filepath.Join(dir, "src"), data)
			return dedupeCase{src: src.Name(), length: size, want: []uint64{}}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(mnt, fmt.Sprint(i))
			if err := mkdir(dir); err != nil {
				t.Fatal(err)
			}
			c := tt.setup(t, dir)
			src := openFile(t, c.src)
			btrfstest.Sync(t, src.Name())
			sums := make(map[string][32]byte)
			for _, d := range append(c.dests, btrfs.DedupeDest{File: src}) {
				sums[d.File.Name()] = checksum(t, d.File)
			}
			before := usage(t, src, c.dests)

			got, err := btrfs.Dedupe(src, c.offset, c.length, c.dests)
			if !errors.Is(err, c.wantErr) || (err != nil) != (c.wantErr != nil) {
				t.Fatalf("Dedupe error = %v, want %v", err, c.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), c.errNames) {
				t.Errorf("error %q does not name %s", err, c.errNames)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("deduped %v, want %v", got, c.want)
			}

			for name, sum := range sums {
				if checksum(t, openFile(t, name)) != sum {
					t.Errorf("content of %s changed", name)
				}
			}
			srcAddrs := diskAddrs(extents(t, src, 0))
			for j, d := range c.dests {
				if c.want[j] == 0 {
					continue
				}
				for _, e := range extents(t, d.File, 0) {
					if inRange(e, d.Offset, d.Offset+c.want[j]) && !srcAddrs[e.DiskBytenr] {
						t.Errorf("destination %d extent %+v not shared with the source", j, e)
					}
				}
			}
			var saved uint64
			for _, n := range got {
				saved += n
			}
			btrfstest.Sync(t, src.Name())
			after := usage(t, src, c.dests)
			if after > before || (saved > 0 && !c.keepsSpace && after >= before) {
				t.Errorf("disk usage %d -> %d after deduplicating %d bytes", before, after, saved)
			}
		})
	}
}

// usage is the disk space of the distinct data extents of src and of the
// destinations that are on btrfs.
func usage(t *testing.T, src *os.File, dests []btrfs.DedupeDest) uint64 {
	t.Helper()
	lists := [][]btrfs.Extent{extents(t, src, 0)}
	for _, d := range dests {
		if ok, err := btrfs.IsBtrfs(d.File.Name()); err != nil || !ok {
			continue
		}
		lists = append(lists, extents(t, d.File, 0))
	}
	return uniqueDiskBytes(lists...)
}

// Dedupe frees the space of the duplicate: the filesystem's free space
// grows by about the size of the range.
func TestDedupeFreesSpace(t *testing.T) {
	mnt := mountBtrfs(t)
	const size = 32 * mib
	data := randomData(size, 42)
	a := create(t, filepath.Join(mnt, "a"), data)
	b := create(t, filepath.Join(mnt, "b"), data)
	btrfstest.Sync(t, a.Name())
	free := func() uint64 {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		return st.Bfree * uint64(st.Bsize)
	}
	before := free()
	got, err := btrfs.Dedupe(a, 0, size, []btrfs.DedupeDest{{File: b}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{size}) {
		t.Fatalf("deduped %v, want [%d]", got, size)
	}
	btrfstest.Sync(t, a.Name())
	if after := free(); after < before+size*3/4 {
		t.Errorf("free space %d -> %d, want about %d more", before, after, size)
	}
	if checksum(t, b) != sha(data) || checksum(t, a) != sha(data) {
		t.Error("content changed")
	}
}

// The kernel handles at most 1 GiB per call, so a longer range needs the
// loop over partial results. Sparse files keep this cheap: the kernel
// compares zero pages, and a marker block at each end keeps the files from
// being entirely holes. Reading 1 GiB of holes back would be slow, so the
// content check reads the markers and relies on the extent lists for the
// rest: equal items mean equal bytes, and no item means a hole.
func TestDedupeLongRange(t *testing.T) {
	if testing.Short() {
		t.Skip("compares over 1 GiB")
	}
	mnt := mountBtrfs(t)
	const size = 1024*mib + 64*mib
	marker := randomData(64*kib, 43)
	markers := []span{{0, uint64(len(marker))}, {size - uint64(len(marker)), size}}

	var files []*os.File
	for _, name := range []string{"a", "b"} {
		f := create(t, filepath.Join(mnt, name), nil)
		for _, m := range markers {
			writeAt(t, f, marker, int64(m.Off))
		}
		files = append(files, f)
	}
	got, err := btrfs.Dedupe(files[0], 0, size, []btrfs.DedupeDest{{File: files[1]}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{size}) {
		t.Errorf("deduped %v, want [%d]", got, size)
	}

	a, b := extents(t, files[0], 0), extents(t, files[1], 0)
	if !equalIgnoringGeneration(a, b) {
		t.Errorf("extents differ after dedupe:\n%+v\n%+v", a, b)
	}
	if got := spans(a); !slices.Equal(got, markers) {
		t.Errorf("source data at %v, want %v", got, markers)
	}
	buf := make([]byte, len(marker))
	for _, f := range files {
		for _, m := range markers {
			if _, err := f.ReadAt(buf, int64(m.Off)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, marker) {
				t.Errorf("%s: marker at %d changed", f.Name(), m.Off)
			}
		}
	}
}
