// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"bytes"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// savingTolerance bounds how far a job's reported saving may be from the
// measured change. Both count whole data extents, so they agree exactly
// unless a small file that btrfs keeps inline, in metadata, changes: the
// measure counts its bytes, a job's saving does not. None of the files
// measured here is that small, so the bound only keeps the check from
// resting on that.
const savingTolerance = 64 << 10

// dataUsed is the disk space of the data extents every file on the
// filesystem holding h's pool references, each extent once, after a
// commit: the filesystem's data usage. The pool's own bookkeeping is left
// out: the dedup index takes all its space once, when the pool's first
// job makes it, and the state file changes with the jobs' records. Its
// temporary copies are measured.
func (h optHarness) dataUsed(mnt string) int64 {
	h.T.Helper()
	btrfstest.Sync(h.T, mnt)
	state, tmp := filepath.Join(h.Dir, volume.StateDir), filepath.Join(h.Dir, volume.StateDir, "tmp")
	var files []string
	err := filepath.WalkDir(mnt, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && (filepath.Dir(path) != state || strings.HasPrefix(path, tmp+"/")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		h.T.Fatal(err)
	}
	return int64(measure(h.T, files...).Total.DiskBytes)
}

// cloneRange reflinks n bytes of src at soff into dst at doff, as a copy
// made with cp --reflink between two files does.
func cloneRange(t *testing.T, src string, soff int64, dst string, doff, n int64) {
	t.Helper()
	s, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := unix.FileCloneRange{Src_fd: int64(s.Fd()), Src_offset: uint64(soff), Src_length: uint64(n), Dest_offset: uint64(doff)}
	if err := unix.IoctlFileCloneRange(int(d.Fd()), &r); err != nil {
		t.Fatalf("reflink %s at %d to %s at %d, %d bytes: %v", src, soff, dst, doff, n, err)
	}
}

// Full passes over AppVMs holding the same data as each other and as
// their template, written outside the daemon (as copies between VMs, or
// reflinked between them or into a file outside the pool), never make
// the filesystem's data usage grow, and each job's reported saving is
// the change measured: a saving is booked to the volume whose job made
// it, and an extent the job only shared into the volume from elsewhere
// is not counted as made.
func TestFullPassesNeverGrowThePool(t *testing.T) {
	const (
		tpl      = "vm-templates/debian/root"
		work     = "appvms/work/private"
		personal = "appvms/personal/private"
	)
	download := append(btrfstest.Text("download", 4*mib), noise(30, 8*mib)...)
	for _, tc := range []struct {
		name string
		// share puts part of work's download (at 20 MiB in img) into
		// personal's image, or elsewhere on the filesystem.
		share func(t *testing.T, mnt, img, other string)
	}{
		{"plain copies", func(t *testing.T, _, _, other string) {
			btrfstest.WriteAt(t, other, 28*mib, download[2*mib:6*mib])
		}},
		{"reflinked into another VM", func(t *testing.T, _, img, other string) {
			btrfstest.Sync(t, img)
			cloneRange(t, img, 21*mib, other, 28*mib, 4*mib)
		}},
		{"reflinked outside the pool", func(t *testing.T, mnt, img, other string) {
			btrfstest.Sync(t, img)
			cloneRange(t, img, 21*mib, filepath.Join(mnt, "Downloads.bin"), 0, 6*mib)
			btrfstest.WriteAt(t, other, 28*mib, download[2*mib:6*mib])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			mnt := filepath.Dir(h.Dir)
			// The template's root is one large extent; each AppVM copied
			// 2 MiB of its middle, so that a job shares a small extent of
			// its own into a large one of another volume.
			base := noise(40, 16*mib)
			if err := os.MkdirAll(filepath.Dir(h.Path(tpl)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(h.Path(tpl+".img"), base, 0o600); err != nil {
				t.Fatal(err)
			}
			imgs := map[string]string{}
			for _, vid := range []string{work, personal} {
				imgs[vid], _ = h.layOutTakenOver(vid, 16*mib)
				btrfstest.WriteAt(t, imgs[vid], 40*mib, base[6*mib:8*mib])
			}
			btrfstest.WriteAt(t, imgs[work], 20*mib, download)
			tc.share(t, mnt, imgs[work], imgs[personal])
			want := sums(t, h.poolFiles())

			var saved, start int64
			for i, vid := range []string{tpl, work, personal} {
				before := h.dataUsed(mnt)
				if i == 0 {
					start = before
				}
				r := h.fullPass(vid)
				after := h.dataUsed(mnt)
				t.Logf("%s: data used %d -> %d, saved %d, left shared %d", vid, before, after, r.Saved(), r.Counters.Get(optimizer.CountCompressBytesSkippedShared))
				if after > before {
					t.Errorf("the job of %s grew the data used: %d -> %d bytes", vid, before, after)
				}
				if d := r.Saved() - (before - after); d > savingTolerance || d < -savingTolerance {
					t.Errorf("the job of %s reported %d bytes saved, the data used went %d -> %d", vid, r.Saved(), before, after)
				}
				saved += r.Saved()
			}
			end := h.dataUsed(mnt)
			if d := saved - (start - end); d > savingTolerance || d < -savingTolerance {
				t.Errorf("the jobs reported %d bytes saved, the data used went %d -> %d", saved, start, end)
			}
			for f, s := range want {
				if btrfstest.Digest(t, f) != s {
					t.Fatalf("%s changed", f)
				}
			}
		})
	}
}

// wordSalad is text of words drawn at random from a small vocabulary:
// zstd shrinks it the more, the harder it tries.
func wordSalad(seed uint64, n int) []byte {
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " +
		"incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco " +
		"laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse")
	r := rand.New(rand.NewPCG(seed, seed))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(" \n"[r.IntN(9)/8])
	}
	return b.Bytes()[:n]
}

// A compressed extent that another volume holds a block of is taken apart
// only when the copy of the rest takes no more space than the extent:
// here the image was compressed at a higher level than the pool's, so
// rewriting its extents would grow the pool, and they are left alone.
func TestDedupKeepsCompressedExtentsItWouldGrow(t *testing.T) {
	const tpl, work = "vm-templates/debian/root", "appvms/work/private"
	h := newOptHarness(t)
	mnt := filepath.Dir(h.Dir)
	for _, vid := range []string{tpl, work} {
		if err := os.MkdirAll(filepath.Dir(h.Path(vid)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Every 128 KiB of the AppVM's image starts with a block the template
	// holds, and is stored as one extent compressed at zstd's highest level.
	// The template holds each block amid noise, which it keeps plain: a
	// block-long run is shared only into an uncompressed source.
	const units = 64
	var shared []byte
	img, err := os.Create(h.Path(work + ".img"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	enc := btrfs.NewZstdEncoder(19, 1)
	for u := range units {
		blk := wordSalad(uint64(1000+u), 4096)
		shared = append(append(shared, blk...), noise(uint64(1000+u), btrfs.MaxCompressedExtent-4096)...)
		data := append(append([]byte(nil), blk...), wordSalad(uint64(u), btrfs.MaxCompressedExtent-4096)...)
		if err := btrfs.WriteZstdExtent(img, uint64(u*btrfs.MaxCompressedExtent), enc.Encode(nil, data), uint64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(h.Path(tpl+".img"), shared, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sums(t, h.poolFiles())
	h.fullPass(tpl)
	before := h.dataUsed(mnt)
	r := h.fullPass(work)
	after := h.dataUsed(mnt)
	t.Logf("data used %d -> %d, saved %d, dedup %+v", before, after, r.Saved(), r.Counters)
	if after > before {
		t.Errorf("the job grew the data used: %d -> %d bytes", before, after)
	}
	if d := r.Saved() - (before - after); d > savingTolerance || d < -savingTolerance {
		t.Errorf("the job reported %d bytes saved, the data used went %d -> %d", r.Saved(), before, after)
	}
	if r.Counters.Get(optimizer.CountDedupHits) == 0 || r.Counters.Get(optimizer.CountDedupBytesKeptWouldGrow) == 0 {
		t.Errorf("no extent kept for growing the pool: %+v", r.Counters)
	}
	for f, s := range want {
		if btrfstest.Digest(t, f) != s {
			t.Fatalf("%s changed", f)
		}
	}
}

// A revision's extent that only the revision references is rewritten
// whole or not at all, however the compression stage's chunks cut it: a
// range defrag of the part in one chunk, which compresses, beside the part
// in the next, which does not, would leave the extent pinned by that part
// next to the copy of the first.
func TestFullPassRewritesExclusiveExtentsWhole(t *testing.T) {
	const vid = "appvms/old/private"
	const half = 512 << 10 // the compression stage's chunk
	for _, tc := range []struct {
		name string
		data []byte // one extent, two chunks long
	}{
		{"text, then noise", slices.Concat(btrfstest.Text(vid, half), noise(7, half))},
		{"noise, then text", slices.Concat(noise(7, half), btrfstest.Text(vid, half))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			mnt := filepath.Dir(h.Dir)
			rev := h.Path(vid + ".img.1@2025-01-01T00:00:00Z")
			if err := os.Rename(h.writeImage(vid, tc.data, 0), rev); err != nil {
				t.Fatal(err)
			}
			h.writeImage(vid, noise(8, len(tc.data)), 0)
			want := sums(t, h.poolFiles())
			before := h.dataUsed(mnt)
			r := h.fullPass(vid)
			after := h.dataUsed(mnt)
			t.Logf("data used %d -> %d, saved %d; counters %+v", before, after, r.Saved(), r.Counters)
			if after > before || r.Saved() < 0 {
				t.Errorf("the pass grew the data used: %d -> %d bytes, saved %d", before, after, r.Saved())
			}
			if got := sums(t, h.poolFiles()); !maps.Equal(got, want) {
				t.Fatal("the pass changed the files' content")
			}
		})
	}
}
