// SPDX-License-Identifier: GPL-2.0-or-later

package pool_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const mib = 1 << 20

// optHarness is a pool on a real btrfs with a running scheduler.
type optHarness struct {
	t     *testing.T
	dir   string
	state string // the daemon's state directory
	reg   *pool.Registry
	sched *pool.Scheduler
	p     *pool.Pool
	stop  func()
}

func newOptHarness(t *testing.T) *optHarness {
	t.Helper()
	mnt := btrfstest.Mount(t, 1<<30)
	dir := filepath.Join(mnt, "pool")
	if _, err := pool.Setup(dir, true); err != nil {
		t.Fatal(err)
	}
	h := &optHarness{t: t, dir: dir, state: t.TempDir()}
	h.open()
	t.Cleanup(h.close)
	return h
}

// open starts a registry and scheduler on the pool, as a daemon start
// does: the pool is opened from the daemon's memory of it, or as qubesd's
// first request opens it the first time.
func (h *optHarness) open() {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h.reg = pool.NewRegistry(log, nil)
	h.sched = pool.NewScheduler(pool.SchedulerConfig{IdleIO: true}, log, h.reg.JobDone)
	h.reg.SetScheduler(h.sched)
	if err := h.reg.Remember(h.state); err != nil {
		h.t.Fatal(err)
	}
	h.reg.Restore()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.sched.Run(ctx); close(done) }()
	h.stop = func() { cancel(); <-done }
	if pools := h.reg.List(); len(pools) == 1 {
		h.p = pools[0]
		return
	}
	p, err := h.reg.Open("vdo", h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	h.p = p
}

func (h *optHarness) close() {
	h.stop()
	h.reg.Close()
}

func (h *optHarness) wait() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.sched.Wait(ctx); err != nil {
		h.t.Fatalf("jobs did not finish: %v %+v", err, h.sched.Jobs())
	}
}

func (h *optHarness) path(name string) string { return filepath.Join(h.dir, name) }

func (h *optHarness) must(_ volume.State, err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

// text is compressible data that differs per seed.
func text(seed string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s line %d: the quick brown fox jumps over the lazy dog\n", seed, i)
	}
	return b.Bytes()[:n]
}

func writeAt(t *testing.T, path string, off int64, data []byte) {
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

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func measure(t *testing.T, paths ...string) usage.Report {
	t.Helper()
	r, err := usage.Measure(paths)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func zstdBytes(r usage.Report) uint64 {
	for _, row := range r.ByType {
		if row.Type == "zstd" {
			return row.UncompressedBytes
		}
	}
	return 0
}

func spec(vid string) volume.Spec {
	return volume.Spec{VID: vid, RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 64 * mib}
}

func TestCommitCompressesOnlyNewDataAndKeepsSharing(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/work/private")
	h.must(h.p.Volumes.Create(s))
	h.must(h.p.Volumes.Start(s))
	writeAt(t, h.path("appvms/work/private-dirty.img"), 0, text("first", 32*mib))
	h.must(h.p.Volumes.Stop(s))
	h.wait()

	h.must(h.p.Volumes.Start(s))
	writeAt(t, h.path("appvms/work/private-dirty.img"), 8*mib, text("second", 4*mib))
	want := sum(t, h.path("appvms/work/private-dirty.img"))
	h.must(h.p.Volumes.Stop(s))
	img := h.path("appvms/work/private.img")
	before, _ := os.Stat(img)
	h.wait()

	if got := sum(t, img); got != want {
		t.Fatal("optimisation changed the image's content")
	}
	after, _ := os.Stat(img)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("optimisation changed the image's mtime")
	}
	pre, err := os.Stat(h.path("appvms/work/private-precache.img"))
	if err != nil || !pre.ModTime().Equal(after.ModTime()) {
		t.Fatalf("precache after the job: %v", err)
	}
	revs, _ := filepath.Glob(h.path("appvms/work/private.img.*"))
	if len(revs) != 1 {
		t.Fatalf("revisions %v", revs)
	}
	r := measure(t, img)
	if zstdBytes(r) < 32*mib-mib {
		t.Errorf("only %d bytes of the image are zstd: %+v", zstdBytes(r), r)
	}
	// The revision still shares every extent the second session did not
	// rewrite: 28 of its 32 MiB.
	pair := measure(t, img, revs[0])
	if pair.Total.ReferencedBytes != 64*mib || pair.Total.UncompressedBytes > 36*mib {
		t.Errorf("image and revision share less than before: %+v", pair.Total)
	}
	// Later guest writes are compressed as written: the dirty image of the
	// next start carries the compression property, and no NOCOMPRESS flag.
	h.must(h.p.Volumes.Start(s))
	dirty := h.path("appvms/work/private-dirty.img")
	writeAt(t, dirty, 40*mib, text("third", 8*mib))
	if z := zstdBytes(measure(t, dirty)); z < 8*mib {
		t.Errorf("guest writes are not compressed: %d bytes zstd", z)
	}
	h.must(h.p.Volumes.Stop(s))
	h.wait()
	var done pool.Counters = h.sched.Counters()
	if done.JobsDone == 0 || done.BytesSaved <= 0 || done.JobsFailed != 0 {
		t.Errorf("counters %+v", done)
	}
}

func TestStartHoldsJobAndNextCommitFinishesIt(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/busy/private")
	h.must(h.p.Volumes.Create(s))
	h.must(h.p.Volumes.Start(s))
	writeAt(t, h.path("appvms/busy/private-dirty.img"), 0, text("busy", 48*mib))
	h.must(h.p.Volumes.Stop(s))
	began := time.Now()
	h.must(h.p.Volumes.Start(s)) // at once: the job may be running
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("start waited %v for the optimiser", d)
	}
	want := sum(t, h.path("appvms/busy/private-dirty.img"))
	h.wait()
	jobs := h.sched.Jobs()
	if len(jobs) > 1 || (len(jobs) == 1 && jobs[0].State != "held") {
		t.Fatalf("jobs while the volume runs: %+v", jobs)
	}
	h.must(h.p.Volumes.Stop(s))
	h.wait()
	img := h.path("appvms/busy/private.img")
	if sum(t, img) != want {
		t.Fatal("data changed")
	}
	if z := zstdBytes(measure(t, img)); z < 40*mib {
		t.Errorf("held work not finished after the next commit: %d bytes zstd", z)
	}
	if len(h.sched.Jobs()) != 0 {
		t.Fatalf("jobs left: %+v", h.sched.Jobs())
	}
}

func TestJobsResumeAfterRestart(t *testing.T) {
	h := newOptHarness(t)
	h.sched.Pause("test")
	s := spec("vm-templates/fedora/root")
	h.must(h.p.Volumes.Create(s))
	h.must(h.p.Volumes.Start(s))
	writeAt(t, h.path("vm-templates/fedora/root-dirty.img"), 0, text("root", 16*mib))
	h.must(h.p.Volumes.Stop(s))
	if jobs := h.sched.Jobs(); len(jobs) != 1 || jobs[0].State != "paused" {
		t.Fatalf("jobs while paused: %+v", jobs)
	}
	h.close() // the daemon stops with the job pending

	h.open()
	h.wait()
	if z := zstdBytes(measure(t, h.path("vm-templates/fedora/root.img"))); z < 15*mib {
		t.Fatalf("pending job not resumed: %d bytes zstd", z)
	}
	if _, err := os.Stat(h.path("vm-templates/fedora/root-precache.img")); err != nil {
		t.Fatal("precache not made after the resumed job")
	}
}

func TestFullPassKeepsRevisionsShared(t *testing.T) {
	h := newOptHarness(t)
	// A volume as file-reflink leaves it: image, revision and precache
	// sharing every uncompressed extent.
	vdir := h.path("appvms/old")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(vdir, "private.img")
	if err := os.WriteFile(img, text("old", 32*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"private.img.1@2025-01-01T00:00:00Z", "private-precache.img"} {
		btrfstest.Reflink(t, img, filepath.Join(vdir, name))
	}
	files, _ := filepath.Glob(filepath.Join(vdir, "*"))
	want := sum(t, img)
	before := measure(t, files...)

	if _, err := h.p.Optimise("appvms/old/private", true); err != nil {
		t.Fatal(err)
	}
	h.wait()
	after := measure(t, files...)
	for _, f := range files {
		if sum(t, f) != want {
			t.Fatalf("%s changed content", f)
		}
	}
	if after.Total.ReferencedBytes != before.Total.ReferencedBytes || after.Total.UncompressedBytes != before.Total.UncompressedBytes {
		t.Errorf("sharing changed: before %+v after %+v", before.Total, after.Total)
	}
	if after.Total.DiskBytes*4 > before.Total.DiskBytes {
		t.Errorf("disk %d -> %d: not compressed", before.Total.DiskBytes, after.Total.DiskBytes)
	}
}

func TestExtentsSharedOutsideTheVolumeAreLeftAloneButIndexed(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/src/private")
	h.must(h.p.Volumes.Create(s))
	h.sched.Pause("clone first")
	h.must(h.p.Volumes.Start(s))
	writeAt(t, h.path("appvms/src/private-dirty.img"), 0, text("src", 16*mib))
	h.must(h.p.Volumes.Stop(s))
	// A clone made before the job ran shares the new extents.
	clone := h.path("clone.img")
	btrfstest.Reflink(t, h.path("appvms/src/private.img"), clone)
	files := []string{h.path("appvms/src/private.img"), clone}
	before := measure(t, files...)
	h.sched.Resume("clone first")
	h.wait()
	after := measure(t, files...)
	if after.Total.DiskBytes > before.Total.DiskBytes {
		t.Fatalf("space grew: %d -> %d", before.Total.DiskBytes, after.Total.DiskBytes)
	}
	if after.Total.ReferencedBytes != before.Total.ReferencedBytes || after.Total.UncompressedBytes != before.Total.UncompressedBytes {
		t.Fatalf("the clone was unshared: %+v -> %+v", before.Total, after.Total)
	}
	if c := h.sched.Counters(); c.SkippedShared == 0 {
		t.Errorf("counters %+v: shared extents not reported as skipped", c)
	}
	// Left alone, they are still indexed: the same data written by
	// another volume is shared with them.
	hits := h.sched.Counters().Dedup.Hits
	other := spec("appvms/other/private")
	h.must(h.p.Volumes.Create(other))
	h.must(h.p.Volumes.Start(other))
	writeAt(t, h.path("appvms/other/private-dirty.img"), 4*mib, text("src", 16*mib))
	h.must(h.p.Volumes.Stop(other))
	h.wait()
	if c := h.sched.Counters().Dedup; c.Hits == hits || c.BytesFreed == 0 {
		t.Errorf("counters %+v: the copy of the kept extents was not deduplicated", c)
	}
}

// A one-block extent shared by image, revision and precache cannot be
// stored smaller, and a compressed copy of it would be inline, which the
// kernel cannot share: it must be left exactly as it is.
func TestSmallSharedExtentStaysShared(t *testing.T) {
	h := newOptHarness(t)
	vdir := h.path("appvms/old")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(vdir, "private.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		data []byte
		off  int64
	}{{text("head", 4096), 0}, {text("body", 4*mib), 4096}} {
		if _, err := f.WriteAt(w.data, w.off); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil { // a separate extent for each write
			t.Fatal(err)
		}
	}
	f.Close()
	names := []string{"private.img", "private.img.1@2025-01-01T00:00:00Z", "private-precache.img"}
	for _, name := range names[1:] {
		btrfstest.Reflink(t, img, filepath.Join(vdir, name))
	}
	if _, err := h.p.Optimise("appvms/old/private", true); err != nil {
		t.Fatal(err)
	}
	h.wait()
	heads := map[uint64]bool{}
	for _, name := range names {
		g, err := os.Open(filepath.Join(vdir, name))
		if err != nil {
			t.Fatal(err)
		}
		exts, err := btrfs.Extents(g, 0)
		g.Close()
		if err != nil {
			t.Fatal(err)
		}
		heads[exts[0].DiskBytenr] = true
	}
	if len(heads) != 1 {
		t.Fatalf("the first block is no longer shared: %d different extents", len(heads))
	}
	r := measure(t, filepath.Join(vdir, names[0]), filepath.Join(vdir, names[1]), filepath.Join(vdir, names[2]))
	if r.Total.UncompressedBytes != 4*mib+4096 || zstdBytes(r) != 4*mib {
		t.Fatalf("body not compressed or unshared: %+v", r.Total)
	}
}

// The saving a job reports is the space it really freed.
func TestReportedSavingMatchesUsage(t *testing.T) {
	random := make([]byte, 16*mib)
	for i := range random {
		random[i] = byte(i*2654435761>>13) ^ byte(i>>7)
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{{"compressible", text("saving", 16*mib)}, {"incompressible", random}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newOptHarness(t)
			s := spec("appvms/work/private")
			h.must(h.p.Volumes.Create(s))
			h.sched.Pause("measure first")
			h.must(h.p.Volumes.Start(s))
			writeAt(t, h.path("appvms/work/private-dirty.img"), 0, tt.data)
			h.must(h.p.Volumes.Stop(s))
			files, _ := filepath.Glob(h.path("appvms/work/private*"))
			before := measure(t, files...).Total.DiskBytes
			h.sched.Resume("measure first")
			h.wait()
			files, _ = filepath.Glob(h.path("appvms/work/private*"))
			after := measure(t, files...).Total.DiskBytes
			saved := h.sched.Counters().BytesSaved
			if diff := saved - (int64(before) - int64(after)); diff > 128<<10 || diff < -128<<10 {
				t.Fatalf("reported %d saved, usage went %d -> %d", saved, before, after)
			}
		})
	}
}

// TestRequestDuringJobRuns: an optimize asked for while the volume's job
// runs is merged into that job, and must still run once that job is done.
func TestRequestDuringJobRuns(t *testing.T) {
	h := newOptHarness(t)
	s := spec("vm-templates/fedora/root")
	s.Size = 256 * mib
	h.must(h.p.Volumes.Create(s))
	h.must(h.p.Volumes.Start(s))
	writeAt(t, h.path("vm-templates/fedora/root-dirty.img"), 0, text("root", 200*mib))
	h.must(h.p.Volumes.Stop(s))
	deadline := time.Now().Add(30 * time.Second)
	for !running(h.sched.Jobs()) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h.sched.Pause("test") // the job waits at its next chunk, still running
	if !running(h.sched.Jobs()) {
		t.Fatalf("the commit's job is not running: %+v", h.sched.Jobs())
	}
	if _, err := h.p.Optimise(s.VID, true); err != nil {
		t.Fatal(err)
	}
	h.sched.Resume("test")
	h.wait()
	if n := h.sched.Counters().JobsDone; n != 2 {
		t.Fatalf("%d jobs ran, want the commit's and then the optimize's: %+v", n, h.sched.Recent())
	}
}

func running(jobs []pool.JobStatus) bool {
	return len(jobs) == 1 && jobs[0].State == "running"
}

// A volume whose files are no-COW (a directory with chattr +C) cannot be
// compressed or share extents: its jobs leave it as it is, without error.
func TestNoCOWVolumeIsLeftAlone(t *testing.T) {
	h := newOptHarness(t)
	const vid = "appvms/nocow/private"
	dir := filepath.Dir(h.path(vid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := btrfs.SetFlags(d, btrfs.FlagNoCOW); err != nil {
		t.Fatal(err)
	}
	s := spec(vid)
	h.must(h.p.Volumes.Create(s))
	h.must(h.p.Volumes.Start(s))
	writeAt(t, h.path(vid+"-dirty.img"), 0, text("nocow", 8*mib))
	h.must(h.p.Volumes.Stop(s))
	want := sum(t, h.path(vid+".img"))
	h.wait()
	if _, err := h.p.Optimise(vid, true); err != nil {
		t.Fatal(err)
	}
	h.wait()
	recent := h.sched.Recent()
	if len(recent) < 2 {
		t.Fatalf("%d jobs done, want the commit's and the full pass's", len(recent))
	}
	for _, done := range recent[len(recent)-2:] {
		if done.VID != vid || done.Err != nil || done.Result.BytesExamined != 0 || done.Result.BytesCompressed != 0 {
			t.Fatalf("job %+v: want %s done, with nothing examined", done, vid)
		}
	}
	if sum(t, h.path(vid+".img")) != want {
		t.Fatal("the image changed")
	}
}
