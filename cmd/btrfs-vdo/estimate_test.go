// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	estimation "github.com/btrfs-vdo/btrfs-vdo/internal/estimate"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

const mib = 1 << 20

// piece is data written at an offset of an image.
type piece struct {
	off  int64
	data []byte
}

func textPiece(n int, seed int) []byte {
	b := make([]byte, 0, n+128)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%d: Jan %2d 10:%02d:%02d host kernel: [%8d.%06d] audit: type=%d pid=%d seed %d\n",
			i, i%31, i%60, i%59, i*7, i*13%1000000, 1100+i%40, 900+i%300, seed)
	}
	return b[:n]
}

func randomPiece(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 42}).Read(b)
	return b
}

// writeImage makes a sparse image of size bytes holding pieces, fsynced,
// with the given mtime.
func writeImage(t *testing.T, path string, size int64, mtime time.Time, pieces ...piece) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, p := range pieces {
		if _, err := f.WriteAt(p.data, p.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// preallocate reserves n bytes at off in path, then writes data at off.
func preallocate(t *testing.T, path string, off, n int64, data []byte, mtime time.Time) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// reflinkAs reflinks src to dst with src's mtime, as file-reflink makes a
// precache or a revision.
func reflinkAs(t *testing.T, src, dst string) {
	t.Helper()
	btrfstest.Reflink(t, src, dst)
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dst, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// layOutPool makes what file-reflink leaves after a few shutdowns: a
// template and two AppVMs sharing data (files copied between them, not
// reflinked), revisions, precaches, text, random data and zero blocks.
func layOutPool(t *testing.T, dir string) {
	t.Helper()
	day := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	common, logs := randomPiece(12*mib, 1), textPiece(10*mib, 2)
	tpl := filepath.Join(dir, "vm-templates", "fedora")
	writeImage(t, filepath.Join(tpl, "root.img"), 256*mib, day,
		piece{0, textPiece(24*mib, 3)}, piece{32 * mib, randomPiece(16*mib, 4)},
		piece{64 * mib, common}, piece{96 * mib, make([]byte, 8*mib)})
	// Space reserved by fallocate, partly written since, as mkfs and
	// installers leave it: it reads as zeros and becomes a hole.
	preallocate(t, filepath.Join(tpl, "root.img"), 128*mib, 8*mib, textPiece(64<<10, 12), day)
	reflinkAs(t, filepath.Join(tpl, "root.img"), filepath.Join(tpl, "root-precache.img"))
	writeImage(t, filepath.Join(tpl, "private.img"), 64*mib, day, piece{0, textPiece(2*mib, 5)})

	work := filepath.Join(dir, "appvms", "work")
	img := filepath.Join(work, "private.img")
	writeImage(t, img, 128*mib, day.Add(time.Hour),
		piece{0, textPiece(8*mib, 6)}, piece{16 * mib, common}, piece{40 * mib, logs},
		piece{56 * mib, randomPiece(8*mib, 7)}, piece{72 * mib, make([]byte, 4*mib)})
	reflinkAs(t, img, filepath.Join(work, "private.img.1@2026-11-02T10:00:00Z"))
	// The VM ran again: part of the image changed, the revision keeps the old data.
	writeImage(t, img, 128*mib, day.Add(2*time.Hour), piece{2 * mib, textPiece(4*mib, 8)}, piece{58 * mib, randomPiece(2*mib, 9)})
	reflinkAs(t, img, filepath.Join(work, "private-precache.img"))

	mail := filepath.Join(dir, "appvms", "mail")
	writeImage(t, filepath.Join(mail, "private.img"), 128*mib, day.Add(3*time.Hour),
		piece{4 * mib, common[:8*mib]}, piece{20 * mib, logs}, piece{36 * mib, randomPiece(6*mib, 10)},
		piece{48 * mib, textPiece(6*mib, 11)}, piece{60 * mib, make([]byte, 2*mib)})
	reflinkAs(t, filepath.Join(mail, "private.img"), filepath.Join(mail, "private-precache.img"))
	btrfstest.Sync(t, dir)
}

// fileState is what must not change of a file or directory.
type fileState struct {
	mode                fs.FileMode
	size                int64
	atime, mtime, ctime unix.Timespec
	xattrs              string
}

// snapshot records every file's and directory's state under dir, and
// btrfs filesystem du's exact figures.
func snapshot(t *testing.T, dir string) (map[string]fileState, string) {
	t.Helper()
	states := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		states[path] = fileState{mode: info.Mode(), size: st.Size, atime: st.Atim, mtime: st.Mtim, ctime: st.Ctim, xattrs: xattrs(t, path)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("btrfs", "filesystem", "du", "-s", "--raw", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs filesystem du: %v: %s", err, out)
	}
	return states, string(out)
}

// xattrs lists path's extended attributes and their values (btrfs
// properties such as compression are among them).
func xattrs(t *testing.T, path string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%q;", name, val[:m])
	}
	return b.String()
}

func runEstimate(t *testing.T, args ...string) estimation.Report {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(append([]string{"estimate", "--json"}, args...), &out, &errOut); code != exitOK {
		t.Fatalf("estimate: exit %d: %s", code, errOut.String())
	}
	var r estimation.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("estimate --json: %v in %s", err, out.String())
	}
	return r
}

func TestEstimateChangesNothing(t *testing.T) {
	dir := filepath.Join(btrfstest.Mount(t, 1<<30), "pool")
	layOutPool(t, dir)
	// Listing a directory sets its access time, under relatime once:
	// walk once first, so that only the estimate could set it again.
	snapshot(t, dir)
	before, duBefore := snapshot(t, dir)
	r := runEstimate(t, "--sample", "50%", dir)
	var text bytes.Buffer
	if code := run([]string{"estimate", "--sample", "25%", "--seed", "7", dir}, &text, &text); code != exitOK || !strings.Contains(text.String(), "TOTAL") {
		t.Fatalf("estimate: exit %d:\n%s", code, text.String())
	}
	t.Logf("estimate:\n%s", text.String())
	after, duAfter := snapshot(t, dir)
	if duBefore != duAfter {
		t.Errorf("btrfs filesystem du changed:\n%s\nto\n%s", duBefore, duAfter)
	}
	if len(before) != len(after) {
		t.Errorf("%d files and directories before, %d after", len(before), len(after))
	}
	for path, st := range before {
		if after[path] != st {
			t.Errorf("%s changed: %+v -> %+v", path, st, after[path])
		}
	}
	if r.Total.DiskBytes == 0 || r.BytesRead == 0 || len(r.VMs) != 3 {
		t.Errorf("estimate measured nothing: %+v", r)
	}
	// Counted from every block's checksum, these are exact: the zero
	// blocks written and the preallocated space left unwritten; the
	// common data again in work and part of it in mail, and mail's copy
	// of the logs.
	zeros, dups := uint64(14*mib+8*mib-64<<10), uint64(12*mib+8*mib+10*mib)
	if r.Total.ZeroBytes != zeros || r.Total.DuplicateBytes != dups || r.Total.DuplicateErrorBytes != 0 {
		t.Errorf("zero bytes %d, duplicates %d ± %d; want %d, %d ± 0", r.Total.ZeroBytes,
			r.Total.DuplicateBytes, r.Total.DuplicateErrorBytes, zeros, dups)
	}
}

// poolDisk is the space the pool's images take, as compsize counts it
// (the daemon's own state beside them is left out).
func poolDisk(t *testing.T, dir string) int64 {
	t.Helper()
	btrfstest.Sync(t, dir)
	r, err := usage.Measure([]string{filepath.Join(dir, "appvms"), filepath.Join(dir, "vm-templates")})
	if err != nil {
		t.Fatal(err)
	}
	return int64(r.Total.DiskBytes)
}

func TestEstimateMatchesOptimize(t *testing.T) {
	dir := filepath.Join(btrfstest.Mount(t, 1<<30), "pool")
	layOutPool(t, dir)
	began := time.Now()
	r := runEstimate(t, "--sample", "25%", "--seed", "7", dir)
	took := time.Since(began)
	before := poolDisk(t, dir)
	if int64(r.Total.DiskBytes) != before {
		t.Errorf("estimate counts %d bytes on disk now, compsize %d", r.Total.DiskBytes, before)
	}

	// The daemon's default configuration.
	socket, pools := serveDaemon(t, optimizer.SchedulerConfig{Workers: 1, ZstdLevel: estimation.DefaultZstdLevel, IdleIO: true})
	// The daemon knows a pool once qubesd uses it, as it does when the
	// taken-over pool's first volume is started.
	if _, err := pools.Open("takeover", dir); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--socket", socket, "optimize", "--full", dir}, &out, &errOut); code != exitOK {
		t.Fatalf("optimize --full: exit %d: %s%s", code, out.String(), errOut.String())
	}
	freed := before - poolDisk(t, dir)
	t.Logf("estimate: saving %d ± %d bytes (deduped %d, compression alone %d ± %d) of %d on disk; read %d bytes in %v",
		r.Total.SavingBytes, r.Total.DedupedErrorBytes, r.Total.DedupedBytes, r.Total.CompressedBytes,
		r.Total.CompressedErrorBytes, before, r.BytesRead, took)
	t.Logf("optimize --full freed %d bytes (estimate off by %+.1f%% of the space before)",
		freed, 100*float64(r.Total.SavingBytes-freed)/float64(before))
	t.Logf("optimize:\n%s", out.String())
	// The interval covers the sampling; 5% of the space before covers what
	// the estimate models more simply than the optimizer works: it
	// compresses each 128 KiB unit on its own where the optimizer
	// compresses an extent's remaining blocks together, judges
	// compressibility per unit instead of per extent, and counts
	// revisions compressed at the pool's level where the kernel's range
	// defrag compresses them.
	tolerance := int64(r.Total.DedupedErrorBytes) + before/20
	if diff := r.Total.SavingBytes - freed; diff > tolerance || -diff > tolerance {
		t.Errorf("estimated saving %d, optimize freed %d: off by %d, more than %d", r.Total.SavingBytes, freed, diff, tolerance)
	}
}

func TestParseSample(t *testing.T) {
	tests := []struct {
		in       string
		bytes    uint64
		fraction float64
		ok       bool
	}{
		{"1GiB", 1 << 30, 0, true},
		{"512MiB", 512 << 20, 0, true},
		{"1048576", 1 << 20, 0, true},
		{"0.05", 0, 0.05, true},
		{"5%", 0, 0.05, true},
		{"100%", 0, 1, true},
		{"1.0", 0, 1, true},
		{"1KiB", 0, 0, false}, // below 1 MiB
		{"0", 0, 0, false},    // nothing
		{"0.0", 0, 0, false},  // nothing
		{"1.5", 0, 0, false},  // more than all
		{"150%", 0, 0, false}, // more than all
		{"-5%", 0, 0, false},  // negative
		{"2 parsecs", 0, 0, false},
		{"NaN%", 0, 0, false},
	}
	for _, tt := range tests {
		var opt estimation.Options
		err := parseSample(tt.in, &opt)
		if (err == nil) != tt.ok || opt.SampleBytes != tt.bytes || math.Abs(opt.SampleFraction-tt.fraction) > 1e-12 {
			t.Errorf("parseSample(%q) = %+v, %v; want %d bytes, fraction %v, ok %v", tt.in, opt, err, tt.bytes, tt.fraction, tt.ok)
		}
	}
}

func TestEstimateUsageErrors(t *testing.T) {
	tests := [][]string{
		{"estimate"},
		{"estimate", "a", "b"},
		{"estimate", "--sample", "2", "/nonexistent"},
		{"estimate", "--level", "16", "/nonexistent"},
		{"estimate", "--seed", "-1", "/nonexistent"},
	}
	for _, args := range tests {
		var out bytes.Buffer
		if code := run(args, &out, &out); code != exitUsage {
			t.Errorf("%v: exit %d, want %d:\n%s", args, code, exitUsage, out.String())
		}
	}
}
