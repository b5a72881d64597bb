// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const mib = 1 << 20

// optHarness is a pool on a real btrfs with a running scheduler.
type optHarness struct{ *pooltest.Harness }

func newOptHarness(t *testing.T) optHarness { return optHarness{pooltest.NewHarness(t)} }

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

// committed creates the volume vid with n bytes of text committed, and
// waits for the commit's job.
func (h optHarness) committed(vid string, n int) volume.Spec {
	h.T.Helper()
	s := spec(vid)
	h.Must(h.P.Volumes.Create(s))
	h.CommitText(s, n)
	h.Wait()
	return s
}

func TestCommitCompressesOnlyNewDataAndKeepsSharing(t *testing.T) {
	h := newOptHarness(t)
	s := h.committed("appvms/work/private", 32*mib)

	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, h.Path("appvms/work/private-dirty.img"), 8*mib, btrfstest.Text("second", 4*mib))
	want := btrfstest.Digest(t, h.Path("appvms/work/private-dirty.img"))
	h.Must(h.P.Volumes.Stop(s))
	img := h.Path("appvms/work/private.img")
	before, _ := os.Stat(img)
	h.Wait()

	if got := btrfstest.Digest(t, img); got != want {
		t.Fatal("optimization changed the image's content")
	}
	after, _ := os.Stat(img)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("optimization changed the image's mtime")
	}
	pre, err := os.Stat(h.Path("appvms/work/private-precache.img"))
	if err != nil || !pre.ModTime().Equal(after.ModTime()) {
		t.Fatalf("precache after the job: %v", err)
	}
	revs, _ := filepath.Glob(h.Path("appvms/work/private.img.*"))
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
	h.Must(h.P.Volumes.Start(s))
	dirty := h.Path("appvms/work/private-dirty.img")
	btrfstest.WriteAt(t, dirty, 40*mib, btrfstest.Text("third", 8*mib))
	if z := zstdBytes(measure(t, dirty)); z < 8*mib {
		t.Errorf("guest writes are not compressed: %d bytes zstd", z)
	}
	h.Must(h.P.Volumes.Stop(s))
	h.Wait()
	var done optimizer.Counters = h.Jobs.Counters()
	if done.Get(optimizer.CountJobDone) == 0 || done.Get(optimizer.CountJobBytesSaved) <= 0 || done.Get(optimizer.CountJobFailed) != 0 {
		t.Errorf("counters %+v", done)
	}
}

func TestStartHoldsJobAndNextCommitFinishesIt(t *testing.T) {
	h := newOptHarness(t)
	s := spec("appvms/busy/private")
	h.Must(h.P.Volumes.Create(s))
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, h.Path("appvms/busy/private-dirty.img"), 0, btrfstest.Text("busy", 48*mib))
	h.Must(h.P.Volumes.Stop(s))
	began := time.Now()
	h.Must(h.P.Volumes.Start(s)) // at once: the job may be running
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("start waited %v for the optimizer", d)
	}
	want := btrfstest.Digest(t, h.Path("appvms/busy/private-dirty.img"))
	h.Wait()
	jobs := h.Jobs.Jobs()
	if len(jobs) > 1 || (len(jobs) == 1 && jobs[0].State != api.JobHeld) {
		t.Fatalf("jobs while the volume runs: %+v", jobs)
	}
	h.Must(h.P.Volumes.Stop(s))
	h.Wait()
	img := h.Path("appvms/busy/private.img")
	if btrfstest.Digest(t, img) != want {
		t.Fatal("data changed")
	}
	if z := zstdBytes(measure(t, img)); z < 40*mib {
		t.Errorf("held work not finished after the next commit: %d bytes zstd", z)
	}
	if len(h.Jobs.Jobs()) != 0 {
		t.Fatalf("jobs left: %+v", h.Jobs.Jobs())
	}
}

func TestJobsResumeAfterRestart(t *testing.T) {
	h := newOptHarness(t)
	h.Jobs.Pause("test")
	s := spec("vm-templates/fedora/root")
	h.Must(h.P.Volumes.Create(s))
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, h.Path("vm-templates/fedora/root-dirty.img"), 0, btrfstest.Text("root", 16*mib))
	h.Must(h.P.Volumes.Stop(s))
	if jobs := h.Jobs.Jobs(); len(jobs) != 1 || jobs[0].State != api.JobPaused {
		t.Fatalf("jobs while paused: %+v", jobs)
	}
	h.Close() // the daemon stops with the job pending

	h.Open()
	h.Wait()
	if z := zstdBytes(measure(t, h.Path("vm-templates/fedora/root.img"))); z < 15*mib {
		t.Fatalf("pending job not resumed: %d bytes zstd", z)
	}
	if _, err := os.Stat(h.Path("vm-templates/fedora/root-precache.img")); err != nil {
		t.Fatal("precache not made after the resumed job")
	}
}

func TestFullPassKeepsRevisionsShared(t *testing.T) {
	h := newOptHarness(t)
	// A volume as file-reflink leaves it: image, revision and precache
	// sharing every uncompressed extent.
	vdir := h.Path("appvms/old")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(vdir, "private.img")
	if err := os.WriteFile(img, btrfstest.Text("old", 32*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"private.img.1@2025-01-01T00:00:00Z", "private-precache.img"} {
		btrfstest.Reflink(t, img, filepath.Join(vdir, name))
	}
	files, _ := filepath.Glob(filepath.Join(vdir, "*"))
	want := btrfstest.Digest(t, img)
	before := measure(t, files...)

	if _, err := h.P.Optimizer.Optimize("appvms/old/private", true); err != nil {
		t.Fatal(err)
	}
	h.Wait()
	after := measure(t, files...)
	for _, f := range files {
		if btrfstest.Digest(t, f) != want {
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
	h.Must(h.P.Volumes.Create(s))
	h.Jobs.Pause("clone first")
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, h.Path("appvms/src/private-dirty.img"), 0, btrfstest.Text("src", 16*mib))
	h.Must(h.P.Volumes.Stop(s))
	// A clone made before the job ran shares the new extents.
	clone := h.Path("clone.img")
	btrfstest.Reflink(t, h.Path("appvms/src/private.img"), clone)
	files := []string{h.Path("appvms/src/private.img"), clone}
	before := measure(t, files...)
	h.Jobs.Resume("clone first")
	h.Wait()
	after := measure(t, files...)
	if after.Total.DiskBytes > before.Total.DiskBytes {
		t.Fatalf("space grew: %d -> %d", before.Total.DiskBytes, after.Total.DiskBytes)
	}
	if after.Total.ReferencedBytes != before.Total.ReferencedBytes || after.Total.UncompressedBytes != before.Total.UncompressedBytes {
		t.Fatalf("the clone was unshared: %+v -> %+v", before.Total, after.Total)
	}
	if c := h.Jobs.Counters(); c.Get(optimizer.CountCompressBytesSkippedShared) == 0 {
		t.Errorf("counters %+v: shared extents not reported as skipped", c)
	}
	// Left alone, they are still indexed: the same data written by
	// another volume is shared with them.
	hits := h.Jobs.Counters().Get(optimizer.CountDedupHits)
	other := spec("appvms/other/private")
	h.Must(h.P.Volumes.Create(other))
	h.Must(h.P.Volumes.Start(other))
	btrfstest.WriteAt(t, h.Path("appvms/other/private-dirty.img"), 4*mib, btrfstest.Text("src", 16*mib))
	h.Must(h.P.Volumes.Stop(other))
	h.Wait()
	if c := h.Jobs.Counters(); c.Get(optimizer.CountDedupHits) == hits || c.Get(optimizer.CountDedupBytesFreed) == 0 {
		t.Errorf("counters %+v: the copy of the kept extents was not deduplicated", c)
	}
}

// A one-block extent shared by image, revision and precache cannot be
// stored smaller, and a compressed copy of it would be inline, which the
// kernel cannot share: it must be left exactly as it is.
func TestSmallSharedExtentStaysShared(t *testing.T) {
	h := newOptHarness(t)
	vdir := h.Path("appvms/old")
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
	}{{btrfstest.Text("head", 4096), 0}, {btrfstest.Text("body", 4*mib), 4096}} {
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
	if _, err := h.P.Optimizer.Optimize("appvms/old/private", true); err != nil {
		t.Fatal(err)
	}
	h.Wait()
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
	}{{"compressible", btrfstest.Text("saving", 16*mib)}, {"incompressible", random}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newOptHarness(t)
			s := spec("appvms/work/private")
			h.Must(h.P.Volumes.Create(s))
			h.Jobs.Pause("measure first")
			h.Must(h.P.Volumes.Start(s))
			btrfstest.WriteAt(t, h.Path("appvms/work/private-dirty.img"), 0, tt.data)
			h.Must(h.P.Volumes.Stop(s))
			files, _ := filepath.Glob(h.Path("appvms/work/private*"))
			before := measure(t, files...).Total.DiskBytes
			h.Jobs.Resume("measure first")
			h.Wait()
			files, _ = filepath.Glob(h.Path("appvms/work/private*"))
			after := measure(t, files...).Total.DiskBytes
			saved := h.Jobs.Counters().Get(optimizer.CountJobBytesSaved)
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
	h.Must(h.P.Volumes.Create(s))
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, h.Path("vm-templates/fedora/root-dirty.img"), 0, btrfstest.Text("root", 200*mib))
	h.Must(h.P.Volumes.Stop(s))
	deadline := time.Now().Add(30 * time.Second)
	for !running(h.Jobs.Jobs()) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h.Jobs.Pause("test") // the job waits at its next chunk, still running
	if !running(h.Jobs.Jobs()) {
		t.Fatalf("the commit's job is not running: %+v", h.Jobs.Jobs())
	}
	if _, err := h.P.Optimizer.Optimize(s.VID, true); err != nil {
		t.Fatal(err)
	}
	h.Jobs.Resume("test")
	h.Wait()
	if n := h.Jobs.Counters().Get(optimizer.CountJobDone); n != 2 {
		t.Fatalf("%d jobs ran, want the commit's and then the optimize's: %+v", n, h.Jobs.Recent())
	}
}

func running(jobs []optimizer.JobStatus) bool {
	return len(jobs) == 1 && jobs[0].State == api.JobRunning
}

// A volume whose files are no-COW (a directory with chattr +C) cannot be
// compressed or share extents: its jobs leave it as it is, without error.
func TestNoCOWVolumeIsLeftAlone(t *testing.T) {
	h := newOptHarness(t)
	const vid = "appvms/nocow/private"
	dir := filepath.Dir(h.Path(vid))
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
	h.Must(h.P.Volumes.Create(s))
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, h.Path(vid+"-dirty.img"), 0, btrfstest.Text("nocow", 8*mib))
	h.Must(h.P.Volumes.Stop(s))
	want := btrfstest.Digest(t, h.Path(vid+".img"))
	h.Wait()
	if _, err := h.P.Optimizer.Optimize(vid, true); err != nil {
		t.Fatal(err)
	}
	h.Wait()
	recent := h.Jobs.Recent()
	if len(recent) < 2 {
		t.Fatalf("%d jobs done, want the commit's and the full pass's", len(recent))
	}
	for _, done := range recent[len(recent)-2:] {
		if done.VID != vid || done.Err != nil || done.Result.Counters.Get(optimizer.CountCompressBytesExamined) != 0 || done.Result.Counters.Get(optimizer.CountCompressBytesCompressed) != 0 {
			t.Fatalf("job %+v: want %s done, with nothing examined", done, vid)
		}
	}
	if btrfstest.Digest(t, h.Path(vid+".img")) != want {
		t.Fatal("the image changed")
	}
}
