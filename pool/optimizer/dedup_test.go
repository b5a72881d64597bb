// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// noise is incompressible data that differs per seed, so that only dedup
// can save space on it.
func noise(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// poolFiles lists every image, precache and revision of the pool.
func (h optHarness) poolFiles() []string {
	h.T.Helper()
	var out []string
	h.eachPoolFile(func(_ string, f volume.File) { out = append(out, h.P.Volumes.Path(f)) })
	return out
}

// eachPoolFile calls fn with every image, precache and revision of the
// pool and its volume's vid.
func (h optHarness) eachPoolFile(fn func(vid string, f volume.File)) {
	h.T.Helper()
	vids, err := h.P.Volumes.List()
	if err != nil {
		h.T.Fatal(err)
	}
	for _, vid := range vids {
		files, err := h.P.Volumes.Files(vid)
		if err != nil {
			h.T.Fatal(err)
		}
		for _, f := range files {
			if f.Kind() != volume.DirtyFile {
				fn(vid, f)
			}
		}
	}
}

// poolDisk is the pool files' disk usage as a set, after a commit.
func (h optHarness) poolDisk() uint64 {
	h.T.Helper()
	btrfstest.Sync(h.T, h.Dir)
	files := h.poolFiles()
	if len(files) == 0 {
		return 0
	}
	return measure(h.T, files...).Total.DiskBytes
}

// session starts the volume, lets write change its dirty image, and stops
// it; the commit's job runs while the test measures the pool around it,
// and fails the test if the job made the pool grow.
func (h optHarness) session(vid string, write func(dirty string)) {
	h.T.Helper()
	s := spec(vid)
	if _, err := os.Stat(h.Path(vid + ".img")); err != nil {
		h.Must(h.P.Volumes.Create(s))
	}
	h.Must(h.P.Volumes.Start(s))
	write(h.Path(vid + "-dirty.img"))
	h.Jobs.Pause("measure")
	h.Must(h.P.Volumes.Stop(s))
	before := h.poolDisk()
	h.Jobs.Resume("measure")
	h.Wait()
	if after := h.poolDisk(); after > before {
		h.T.Fatalf("job of %s grew the pool: %d -> %d", vid, before, after)
	}
}

func sums(t *testing.T, files []string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	for _, f := range files {
		out[f] = btrfstest.Digest(t, f)
	}
	return out
}

func TestDedupSharesDataOtherVolumesHold(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		// maxGrowth bounds the pool's growth from the second copy of data.
		maxGrowth uint64
	}{
		{"incompressible", noise(1, 8*mib), mib},
		{"compressible", btrfstest.Text("shared", 8*mib), 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			h.session("vm-templates/fedora/root", func(dirty string) { btrfstest.WriteAt(t, dirty, 0, noise(2, 4*mib)) })
			h.session("appvms/work/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 4*mib, tc.data) })
			h.session("appvms/personal/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 0, noise(3, 2*mib)) })
			base := h.poolDisk()

			// The same 8 MiB at another offset of another volume.
			h.session("appvms/personal/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 16*mib, tc.data) })
			after := h.poolDisk()
			t.Logf("pool %d -> %d bytes for a second copy of 8 MiB; counters %+v", base, after, h.Jobs.Counters())
			if after > base+tc.maxGrowth {
				t.Errorf("pool grew by %d bytes for data it already held", after-base)
			}
			c := h.Jobs.Counters()
			if c.Get(optimizer.CountDedupHits) == 0 || c.Raw(optimizer.CountDedupIoctlMs) == 0 || c.Get(optimizer.CountDedupBytesHashed) < 8*mib {
				t.Errorf("counters %+v", c)
			}

			img := h.Path("appvms/personal/private.img")
			revs, _ := filepath.Glob(img + ".*")
			if len(revs) != 1 {
				t.Fatalf("revisions %v", revs)
			}
			// The revision still shares all but what the session wrote.
			if pair := measure(t, img, revs[0]); pair.Total.UncompressedBytes > 10*mib+mib {
				t.Errorf("image and revision share less than before: %+v", pair.Total)
			}
			want := sums(t, h.poolFiles())
			got, _ := os.ReadFile(img)
			if !slices.Equal(got[16*mib:24*mib], tc.data) || !slices.Equal(got[:2*mib], noise(3, 2*mib)) {
				t.Fatal("image content changed")
			}
			wantRev := want[revs[0]]
			h.Must(h.P.Volumes.Revert(spec("appvms/personal/private"), ""))
			if btrfstest.Digest(t, img) != wantRev {
				t.Fatal("revert did not restore the revision's bytes")
			}

			// The index persists: after a restart, a third copy is found.
			h.Close()
			h.Open()
			base = h.poolDisk()
			h.session("appvms/work/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 32*mib, tc.data) })
			if after := h.poolDisk(); after > base+tc.maxGrowth {
				t.Errorf("after a restart the pool grew by %d bytes for data it already held", after-base)
			}
			if c := h.Jobs.Counters(); c.Get(optimizer.CountDedupHits) == 0 {
				t.Errorf("no dedup after a restart: %+v", c)
			}
		})
	}
}

// TestDedupPunchesZeros: zeros written out, and space preallocated in an
// image (as mkfs.ext4 leaves it, zeroing with FALLOC_FL_ZERO_RANGE), which
// reads as zeros, become holes; the data around them stays.
func TestDedupPunchesZeros(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zeros func(t *testing.T, dirty string, off, n int64)
	}{
		{"written", func(t *testing.T, dirty string, off, n int64) { btrfstest.WriteAt(t, dirty, off, make([]byte, n)) }},
		{"preallocated", func(t *testing.T, dirty string, off, n int64) {
			f, err := os.OpenFile(dirty, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE, off, n); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			vid := "appvms/zero/private"
			// The image's mtime names its next revision: punching must
			// keep the one the commit gave it.
			mtime := time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)
			h.session(vid, func(dirty string) {
				btrfstest.WriteAt(t, dirty, 0, noise(4, 2*mib))
				tc.zeros(t, dirty, 2*mib, 8*mib)
				btrfstest.WriteAt(t, dirty, 10*mib, noise(5, 2*mib))
				if err := os.Chtimes(dirty, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			})
			img := h.Path(vid + ".img")
			info, err := os.Stat(img)
			if err != nil {
				t.Fatal(err)
			}
			if !info.ModTime().Equal(mtime) {
				t.Errorf("image mtime %v after the job, want %v", info.ModTime(), mtime)
			}
			if used := info.Sys().(*syscall.Stat_t).Blocks * 512; used > 4*mib+256<<10 {
				t.Errorf("image allocates %d bytes for 4 MiB of data and 8 MiB of zeros", used)
			}
			if info.Size() != 64*mib {
				t.Errorf("size %d", info.Size())
			}
			got, _ := os.ReadFile(img)
			if !slices.Equal(got[:2*mib], noise(4, 2*mib)) || !slices.Equal(got[2*mib:10*mib], make([]byte, 8*mib)) ||
				!slices.Equal(got[10*mib:12*mib], noise(5, 2*mib)) {
				t.Fatal("image content changed")
			}
			if c := h.Jobs.Counters(); c.Get(optimizer.CountDedupZeroBlocksPunched) != 2048 {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

func TestDedupErasesStaleIndexEntry(t *testing.T) {
	h := newOptHarness(t)
	other := noise(6, 4*mib)
	h.session("appvms/a/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 0, other) })
	// An entry claiming that the first block of data lies where a's
	// first block is: as if a had rewritten it since it was indexed.
	data := noise(7, 4*mib)
	f, err := os.Open(h.Path("appvms/a/private.img"))
	if err != nil {
		t.Fatal(err)
	}
	exts, err := btrfs.Extents(f, 0)
	f.Close()
	if err != nil || len(exts) == 0 {
		t.Fatal(exts, err)
	}
	stale := exts[0].DiskBytenr + exts[0].ExtentOffset
	hash := dedupindex.HashBlock(data[:4096])
	h.Close()
	// At the size the pool gave it, which the pool keeps.
	size := dedupindex.StoredSize(stateRoot(t, h.Dir), "dedup.idx")
	idx, _, err := dedupindex.Open(stateRoot(t, h.Dir), "dedup.idx", size)
	if err != nil {
		t.Fatal(err)
	}
	idx.Insert(hash, stale)
	if err := idx.Close(); err != nil {
		t.Fatal(err)
	}
	h.Open()
	want := btrfstest.Digest(t, h.Path("appvms/a/private.img"))

	h.session("appvms/b/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 0, data) })
	if c := h.Jobs.Counters(); c.Get(optimizer.CountDedupMisses) != 1 || c.Get(optimizer.CountDedupHits) != 0 {
		t.Errorf("counters %+v", c)
	}
	if btrfstest.Digest(t, h.Path("appvms/a/private.img")) != want {
		t.Fatal("a's image changed")
	}
	got, _ := os.ReadFile(h.Path("appvms/b/private.img"))
	if !slices.Equal(got[:4*mib], data) {
		t.Fatal("b's image changed")
	}
	h.Close()
	idx, _, err = dedupindex.Open(stateRoot(t, h.Dir), "dedup.idx", size)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	if slices.Contains(idx.Lookup(nil, hash), stale) {
		t.Error("stale entry kept")
	}
	if len(idx.Lookup(nil, hash)) != 1 {
		t.Error("b's block not indexed")
	}
	h.Open()
}

func TestFullPassDedupsExistingData(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		// maxAfter bounds the pool's usage after the pass.
		maxAfter uint64
	}{
		{"incompressible", noise(8, 8*mib), 8*mib + mib},
		{"compressible", btrfstest.Text("full", 8*mib), 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			// Images as another driver left them: the same 8 MiB in a
			// template and in an AppVM, at different offsets, never seen
			// by the daemon.
			for _, w := range []struct {
				vid string
				off int64
			}{{"vm-templates/debian/root", 0}, {"appvms/mail/private", 24 * mib}} {
				if err := os.MkdirAll(filepath.Dir(h.Path(w.vid)), 0o755); err != nil {
					t.Fatal(err)
				}
				img := h.Path(w.vid + ".img")
				if err := os.WriteFile(img, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				btrfstest.WriteAt(t, img, w.off, tc.data)
			}
			// The AppVM's image shares every extent with its revision and
			// precache, as file-reflink leaves them.
			mail := h.Path("appvms/mail/private.img")
			for _, name := range []string{"private.img.1@2025-01-01T00:00:00Z", "private-precache.img"} {
				btrfstest.Reflink(t, mail, h.Path("appvms/mail/"+name))
			}
			files := h.poolFiles()
			want := sums(t, files)
			before := h.poolDisk()
			for _, vid := range []string{"vm-templates/debian/root", "appvms/mail/private"} {
				if _, err := h.P.Optimizer.Optimize(vid, true); err != nil {
					t.Fatal(err)
				}
				h.Wait()
			}
			after := h.poolDisk()
			c := h.Jobs.Counters()
			t.Logf("pool %d -> %d bytes; counters %+v", before, after, c)
			if after > tc.maxAfter || c.Get(optimizer.CountDedupBytesFreed) == 0 {
				t.Errorf("pool %d -> %d bytes: the duplicate was not freed", before, after)
			}
			for f, s := range want {
				if btrfstest.Digest(t, f) != s {
					t.Fatalf("%s changed", f)
				}
			}
			if len(files) != 4 {
				t.Fatalf("files %v", files)
			}
			if r := measure(t, files[1:]...); r.Total.UncompressedBytes > 8*mib {
				t.Errorf("the AppVM's image, revision and precache no longer share: %+v", r.Total)
			}
		})
	}
}

// TestCorruptIndexIsSetAside: an index file that is torn, or crafted with
// a valid checksum and a huge size, is set aside and a fresh index used;
// the job and the pool carry on, and the daemon does not run out of
// memory at every start.
func TestCorruptIndexIsSetAside(t *testing.T) {
	for i, tc := range []struct {
		name    string
		content []byte
	}{
		{"torn", []byte("not an index")},
		{"huge size", craftedIndexHeader(1<<44, 1<<32)},
		{"size over its length", craftedIndexHeader(1<<30, 1<<18)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			idxPath := filepath.Join(h.Dir, volume.StateDir, "dedup.idx")
			if err := os.MkdirAll(filepath.Dir(idxPath), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(idxPath, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			data := noise(10+uint64(i), 2*mib)
			h.session("appvms/c/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 0, data) })
			if _, err := os.Stat(idxPath + ".corrupt"); err != nil {
				t.Errorf("corrupt index not set aside: %v", err)
			}
			if done := h.Jobs.Recent(); len(done) != 1 || done[0].Err != nil {
				t.Fatalf("jobs %+v", done)
			}
			// The fresh index works: a second copy is found.
			h.session("appvms/d/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 0, data) })
			if c := h.Jobs.Counters(); c.Get(optimizer.CountDedupHits) == 0 || c.Get(optimizer.CountDedupBytesFreed) < 2*mib {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

// craftedIndexHeader is the header of an index file with a valid
// checksum claiming a table of size bytes in nbuckets buckets, and
// nothing else.
func craftedIndexHeader(size, nbuckets uint64) []byte {
	h := make([]byte, 4096)
	copy(h, "bvdo-dix")
	binary.LittleEndian.PutUint32(h[8:], 1)
	binary.LittleEndian.PutUint32(h[12:], 4096)
	binary.LittleEndian.PutUint64(h[16:], size)
	binary.LittleEndian.PutUint64(h[24:], nbuckets)
	binary.LittleEndian.PutUint64(h[32:], xxhash.Sum64(h[:32]))
	return h
}

// TestDedupTakesExtentsApart writes new extents only part of which is
// found elsewhere: the matching blocks must be shared and the rest
// rewritten, so that the new extent is freed whole and the pool grows by
// the new data alone.
func TestDedupTakesExtentsApart(t *testing.T) {
	known := noise(11, 4*mib)
	fresh := btrfstest.Text("fresh", 4*mib)
	for _, tc := range []struct {
		name string
		// write is the second session's data, as one write at offset 0.
		write []byte
		// maxGrowth bounds the pool's growth from it.
		maxGrowth uint64
	}{
		{"known then fresh", slices.Concat(known, fresh), 512 << 10},
		{"fresh then known", slices.Concat(fresh, known), 512 << 10},
		{"known inside fresh", slices.Concat(fresh[:2*mib], known, fresh[2*mib:]), 512 << 10},
		{"repeated within the job", slices.Concat(noise(12, 2*mib), fresh[:mib], noise(12, 2*mib)), 2*mib + 256<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			h.session("appvms/work/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 8*mib, known) })
			base := h.poolDisk()
			h.session("appvms/personal/private", func(dirty string) { btrfstest.WriteAt(t, dirty, 0, tc.write) })
			after := h.poolDisk()
			c := h.Jobs.Counters()
			t.Logf("pool %d -> %d bytes; counters %+v", base, after, c)
			if after > base+tc.maxGrowth {
				t.Errorf("pool grew by %d bytes, more than the %d its new data needs", after-base, tc.maxGrowth)
			}
			if c.Get(optimizer.CountDedupBytesRewritten) == 0 || c.Get(optimizer.CountDedupBytesFreed) < int64(len(tc.write))/2 {
				t.Errorf("the new extent was not taken apart: %+v", c)
			}
			got, _ := os.ReadFile(h.Path("appvms/personal/private.img"))
			if !slices.Equal(got[:len(tc.write)], tc.write) {
				t.Fatal("image content changed")
			}
		})
	}
}

// A pass cut into segments still frees data repeated in a later segment:
// the earlier segment indexed the extent it kept, and the later one finds
// it there. Segments of 1 MiB put each of the three extents in its own.
func TestDedupAcrossSegments(t *testing.T) {
	optimizer.SetSegmentBytes(t, mib)
	h := newOptHarness(t)
	repeated, other := noise(21, 2*mib), noise(22, mib)
	var want []byte
	h.session("appvms/work/private", func(dirty string) {
		// Apart from each other, the writes make three extents.
		for i, data := range [][]byte{repeated, other, repeated} {
			btrfstest.WriteAt(t, dirty, int64(i)*4*mib, data)
		}
		want, _ = os.ReadFile(dirty)
	})
	img := h.Path("appvms/work/private.img")
	if n := len(btrfstest.Extents(t, img)); n < 3 {
		t.Fatalf("%d extents, want the three written", n)
	}
	c := h.Jobs.Counters()
	used := h.poolDisk()
	t.Logf("pool %d bytes; counters %+v", used, c)
	// 3 MiB of distinct data; 5 MiB when the repeat is not found.
	if used > 3*mib+256<<10 || c.Get(optimizer.CountDedupBytesFreed) < 2*mib {
		t.Errorf("pool holds %d bytes, freed %d: the repeat in the third segment was not found", used, c.Get(optimizer.CountDedupBytesFreed))
	}
	if got, _ := os.ReadFile(img); !slices.Equal(got, want) {
		t.Fatal("image content changed")
	}
}

// stateRoot opens the state directory of the pool at dir until the test
// ends.
func stateRoot(t *testing.T, dir string) *fsroot.Root {
	t.Helper()
	r, err := fsroot.Open(filepath.Join(dir, volume.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// The dedup stage judges an extent's compressibility over all of it, not
// by its first piece: a file-reflink volume's image (and its revision,
// sharing it) whose extent starts with a single block, or with data that
// does not compress, is compressed in that stage when the rest compresses;
// an extent of noise is left as it is.
func TestFullPassJudgesWholeExtents(t *testing.T) {
	const n = 8 * mib
	const vid = "appvms/mixed/private"
	for _, tc := range []struct {
		name string
		data []byte
		gap  bool // the second block overwritten: the extent's first item is one block
		// compressed: the image's data ends up compressed (else left plain)
		compressed bool
	}{
		{name: "first item one block", data: btrfstest.Text(vid, n), gap: true, compressed: true},
		{name: "noise first, text after", data: slices.Concat(noise(3, mib), btrfstest.Text(vid, n-mib)), compressed: true},
		{name: "noise", data: noise(4, n)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			var overwrites []span
			if tc.gap {
				overwrites = append(overwrites, span{4096, 4096})
			}
			img := h.writeImage(vid, tc.data, 0, overwrites...)
			rev := h.Path(vid + ".img.1@2025-01-01T00:00:00Z")
			btrfstest.Reflink(t, img, rev)
			files := []string{img, rev}
			want := sums(t, files)
			res := h.fullPass(vid)
			if got := sums(t, files); !maps.Equal(got, want) {
				t.Fatal("the pass changed the files' content")
			}
			z := zstdBytes(measure(t, img))
			if both := measure(t, files...); both.Total.UncompressedBytes > n+mib {
				t.Errorf("image and revision no longer share their data: %+v", both.Total)
			}
			t.Logf("zstd %d bytes of %d; counters %+v", z, n, res.Counters)
			if tc.compressed && z < n-2*mib {
				t.Errorf("%d bytes of the image compressed; want its text, at least %d", z, n-2*mib)
			}
			// Compressed by the dedup stage, which read the data once for
			// both stages, not left to the compression stage's second read.
			if examined := res.Counters.Get(optimizer.CountCompressBytesExamined); tc.compressed && examined > n+mib {
				t.Errorf("%d bytes examined for %d of data: the extent was judged twice", examined, n)
			}
			if !tc.compressed && z != 0 {
				t.Errorf("%d bytes of noise compressed; want none", z)
			}
		})
	}
}
