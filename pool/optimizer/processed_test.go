// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// layOutTakenOver writes a volume as file-reflink leaves it, never seen
// by the daemon: a clean image of incompressible and compressible data,
// and a revision sharing all of it but its first 2 MiB. It returns the
// two files.
func (h optHarness) layOutTakenOver(vid string, size int) (img, rev string) {
	h.T.Helper()
	if err := os.MkdirAll(filepath.Dir(h.Path(vid)), 0o755); err != nil {
		h.T.Fatal(err)
	}
	img, rev = h.Path(vid+".img"), h.Path(vid+".img.1@2025-01-01T00:00:00Z")
	f, err := os.Create(img)
	if err != nil {
		h.T.Fatal(err)
	}
	defer f.Close()
	// Apart, so that the text's extents are whole in both files and can
	// be compressed without unsharing.
	for i, data := range [][]byte{noise(1, size/2), btrfstest.Text(vid, size/2)} {
		if _, err := f.WriteAt(data, int64(i*size/2)); err != nil {
			h.T.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			h.T.Fatal(err)
		}
	}
	btrfstest.Reflink(h.T, img, rev)
	btrfstest.WriteAt(h.T, img, 0, noise(2, 2*mib))
	return img, rev
}

// fullPass runs optimize --full on vid and returns the job's result.
func (h optHarness) fullPass(vid string) optimizer.Result {
	h.T.Helper()
	if _, err := h.P.Optimizer.Optimize(vid, true); err != nil {
		h.T.Fatal(err)
	}
	h.Wait()
	return h.lastDone(vid)
}

// lastDone returns the result of the last job that ended, which must be
// a job of vid that did not fail.
func (h optHarness) lastDone(vid string) optimizer.Result {
	h.T.Helper()
	recent := h.Jobs.Recent()
	if len(recent) == 0 {
		h.T.Fatalf("no job of %s ended", vid)
	}
	done := recent[len(recent)-1]
	if done.VID != vid || done.Err != nil {
		h.T.Fatalf("last job %+v, want %s done", done, vid)
	}
	return done.Result
}

// rewriteKeepingMtime overwrites part of path in place and puts its mtime
// back, as a writer outside the daemon may.
func rewriteKeepingMtime(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	btrfstest.WriteAt(t, path, off, data)
	if err := os.Chtimes(path, time.Time{}, info.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// replaceByCopy puts a reflinked copy, another inode, in place of path.
func replaceByCopy(t *testing.T, path string) {
	t.Helper()
	btrfstest.Reflink(t, path, path+"~")
	if err := os.Rename(path+"~", path); err != nil {
		t.Fatal(err)
	}
}

// commitOutside commits img as file-reflink does without the daemon: a
// reflinked copy of it becomes revision rev, and a reflinked copy with
// data written at off, as a VM would, is renamed over it.
func commitOutside(t *testing.T, img, rev string, off int64, data []byte) {
	t.Helper()
	btrfstest.Reflink(t, img, img+"-dirty")
	btrfstest.WriteAt(t, img+"-dirty", off, data)
	btrfstest.Reflink(t, img, rev)
	if err := os.Rename(img+"-dirty", img); err != nil {
		t.Fatal(err)
	}
}

// Each full pass reads only what was written since the last job, even in
// files put in place outside the daemon, which are other inodes.
func TestFullPassReadsOnlyNewData(t *testing.T) {
	h := newOptHarness(t)
	const vid = "appvms/old/private"
	img, rev := h.layOutTakenOver(vid, 16*mib)
	rev2, rev3 := h.Path(vid+".img.2@2025-01-02T00:00:00Z"), h.Path(vid+".img.9@2025-01-09T00:00:00Z")
	steps := []struct {
		name   string
		change func()
		// The bytes of uncompressed extents the pass examines for
		// compression, and at most those its dedup stage hashes.
		minExamined, maxExamined, maxHashed int64
	}{
		{"first", func() {}, 16 * mib, 32 * mib, 16 * mib},
		{"nothing new", func() {}, 0, 0, 0},
		{"written in place", func() { rewriteKeepingMtime(t, img, 4*mib, noise(3, 3*mib)) }, 3 * mib, 3 * mib, 3 * mib},
		{"image replaced by a copy", func() { replaceByCopy(t, img) }, 0, 0, 0},
		{"committed the file-reflink way", func() { commitOutside(t, img, rev2, 6*mib, noise(4, 2*mib)) }, 2 * mib, 2 * mib, 2 * mib},
		// Its job examined what the VM wrote, into another inode.
		{"committed through the daemon", func() {
			h.session(vid, func(dirty string) { btrfstest.WriteAt(t, dirty, mib, noise(5, mib)) })
		}, 0, 0, 0},
		{"committed the file-reflink way again", func() { commitOutside(t, img, rev3, 2*mib, noise(6, mib)) }, mib, mib, mib},
		{"nothing new after that", func() {}, 0, 0, 0},
	}
	for _, step := range steps {
		step.change()
		want := sums(t, existing(t, img, rev, rev2, rev3))
		res := h.fullPass(vid)
		examined, hashed := res.Counters.Get(optimizer.CountCompressBytesExamined), res.Counters.Get(optimizer.CountDedupBytesHashed)
		t.Logf("%s: examined %d, hashed %d", step.name, examined, hashed)
		if examined < step.minExamined || examined > step.maxExamined {
			t.Errorf("%s pass examined %d bytes, want %d to %d", step.name, examined, step.minExamined, step.maxExamined)
		}
		if hashed > step.maxHashed {
			t.Errorf("%s pass hashed %d bytes, want at most %d", step.name, hashed, step.maxHashed)
		}
		if got := sums(t, existing(t, img, rev, rev2, rev3)); !maps.Equal(got, want) {
			t.Fatalf("%s pass changed the volume's content", step.name)
		}
	}
	if z := zstdBytes(measure(t, img)); z < 7*mib {
		t.Errorf("only %d bytes of the image compressed", z)
	}
}

// What a VM the daemon started wrote is examined by a full pass when it
// was committed outside the daemon, though a pass recorded how far its
// volume was examined while it ran, or after that commit.
func TestOutsideCommitOfAStartedVMIsExamined(t *testing.T) {
	for _, tc := range []struct {
		name         string
		coldWhileRan bool // else after the commit
	}{
		{"pass while it ran", true},
		{"pass after the commit", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := optHarness{pooltest.NewHarnessWith(t, optimizer.SchedulerConfig{IdleIO: true, ZstdLevel: 1,
				Cold: optimizer.ColdPolicy{Level: 15}})}
			const vid, other = "appvms/old/private", "appvms/other/private"
			img, _ := h.layOutTakenOver(vid, 16*mib)
			h.fullPass(vid)
			h.session(other, func(dirty string) { btrfstest.WriteAt(t, dirty, 0, prose(2, 4*mib)) })

			h.Must(h.P.Volumes.Start(spec(vid)))
			dirty := h.Path(vid + "-dirty.img")
			btrfstest.WriteAt(t, dirty, 4*mib, prose(3, 4*mib))
			btrfstest.Sync(t, dirty)
			// A cold pass records, for every idle volume, how far it was
			// examined.
			if tc.coldWhileRan {
				h.optimizeCold(other)
			}
			btrfstest.Reflink(t, img, h.Path(vid+".img.2@2025-01-02T00:00:00Z"))
			if err := os.Rename(dirty, img); err != nil {
				t.Fatal(err)
			}
			if !tc.coldWhileRan {
				h.optimizeCold(other)
			}
			want := btrfstest.Digest(t, img)

			res := h.fullPass(vid)
			// Written compressed, as the directory asks, it is hashed,
			// not compressed again.
			if hashed := res.Counters.Get(optimizer.CountDedupBytesHashed); hashed < 4*mib {
				t.Errorf("the pass hashed %d bytes, want the 4 MiB the VM wrote", hashed)
			}
			if btrfstest.Digest(t, img) != want {
				t.Fatal("the pass changed the image's content")
			}
		})
	}
}

// existing keeps the paths that name a file.
func existing(t *testing.T, paths ...string) []string {
	t.Helper()
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return out
}

// A full pass cut short resumes at the file it was working on.
func TestInterruptedFullPassSkipsFinishedFiles(t *testing.T) {
	// What a finished pass leaves of the revision uncompressed: its 32 MiB
	// of noise, and what range defrag, best effort, may skip.
	const leftAlone = 48 * mib
	h := newOptHarness(t)
	const vid = "appvms/old/private"
	img, rev := h.layOutTakenOver(vid, 64*mib)
	// The revision's own 128 MiB take the pass long enough to stop it there.
	btrfstest.WriteAt(t, rev, 64*mib, btrfstest.Text("revision", 128*mib))
	want := sums(t, []string{img, rev})
	if _, err := h.P.Optimizer.Optimize(vid, true); err != nil {
		t.Fatal(err)
	}
	// Past the image's 64 MiB, the pass works on the revision.
	deadline := time.Now().Add(time.Minute)
	for !doneBeyond(h.Jobs.Jobs(), 65*mib) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h.Jobs.Pause("test")
	h.Close() // the daemon stops mid-revision

	left := uncompressed(t, rev)
	if left <= leftAlone {
		t.Fatal("the pass finished before it could be stopped")
	}
	h.Open()
	h.Wait()
	recent := h.Jobs.Recent()
	if len(recent) != 1 || recent[0].Err != nil {
		t.Fatalf("resumed jobs %+v", recent)
	}
	// Reading the image again would add its 32 MiB that do not compress.
	// Examined bytes can exceed what was left by a chunk or two, counted
	// twice when writeback of the chunk before splits its extent while
	// the chunk's extents are listed.
	res := recent[0].Result.Counters
	examined, hashed := uint64(res.Get(optimizer.CountCompressBytesExamined)), res.Get(optimizer.CountDedupBytesHashed)
	if examined < left || examined > left+16*mib || hashed != 0 {
		t.Errorf("resumed pass examined %d bytes and hashed %d, want the %d the revision had left, and nothing of the image",
			examined, hashed, left)
	}
	if got := sums(t, []string{img, rev}); !maps.Equal(got, want) {
		t.Fatal("the passes changed the volume's content")
	}
	if left := uncompressed(t, rev); left > leftAlone {
		t.Errorf("%d bytes of the revision left uncompressed", left)
	}
}

// Marks go with the files and volumes they are about.
func TestMarksOfRemovedFilesAreDropped(t *testing.T) {
	h := newOptHarness(t)
	_, rev := h.layOutTakenOver("appvms/a/private", 4*mib)
	h.layOutTakenOver("appvms/b/private", 4*mib)
	h.fullPass("appvms/a/private")
	h.fullPass("appvms/b/private")
	want := map[string][]string{
		"appvms/a/private": {"appvms/a/private.img", "appvms/a/private.img.1@2025-01-01T00:00:00Z"},
		"appvms/b/private": {"appvms/b/private.img", "appvms/b/private.img.1@2025-01-01T00:00:00Z"},
	}
	h.checkMarks(want)

	if err := os.Remove(rev); err != nil {
		t.Fatal(err)
	}
	h.fullPass("appvms/a/private")
	want["appvms/a/private"] = want["appvms/a/private"][:1]
	h.checkMarks(want)

	if _, err := h.P.Volumes.Remove(spec("appvms/b/private")); err != nil {
		t.Fatal(err)
	}
	delete(want, "appvms/b/private")
	h.checkMarks(want)
}

// checkMarks compares the files with marks in the pool's state to want.
func (h optHarness) checkMarks(want map[string][]string) {
	h.T.Helper()
	data, err := os.ReadFile(filepath.Join(h.Dir, volume.StateDir, "state.json"))
	if err != nil {
		h.T.Fatal(err)
	}
	var st struct {
		Processed map[string]map[string]json.RawMessage `json:"processed"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		h.T.Fatal(err)
	}
	got := map[string][]string{}
	for vid, marks := range st.Processed {
		for name := range marks {
			got[vid] = append(got[vid], name)
		}
		slices.Sort(got[vid])
	}
	if len(got) != len(want) {
		h.T.Fatalf("marks %v, want %v", got, want)
	}
	for vid, names := range want {
		if !slices.Equal(got[vid], names) {
			h.T.Fatalf("marks %v, want %v", got, want)
		}
	}
}

func doneBeyond(jobs []optimizer.JobStatus, n uint64) bool {
	return len(jobs) == 1 && jobs[0].DoneBytes >= n
}

// uncompressed sums the logical bytes of path's uncompressed extents.
func uncompressed(t *testing.T, path string) uint64 {
	t.Helper()
	var n uint64
	for _, e := range btrfstest.Extents(t, path) {
		if e.Type == btrfs.ExtentRegular && !e.IsHole() && e.Compression == btrfs.CompressNone {
			n += e.Length
		}
	}
	return n
}

// What no job examined is read by the next job or full pass, whatever
// the daemon did with the volume in between: its examined mark, carried
// forward by later jobs, must not pass over it.
func TestFullPassReadsWhatNoJobExamined(t *testing.T) {
	const vid, n = "appvms/old/private", 4 * mib
	// commitHeld commits new data with jobs paused: the commit's job
	// waits until the test resumes them.
	commitHeld := func(h optHarness) {
		s := spec(vid)
		h.Jobs.Pause("test")
		h.Must(h.P.Volumes.Start(s))
		btrfstest.WriteAt(h.T, h.Path(vid+"-dirty.img"), 4*mib, noise(7, n))
		h.Must(h.P.Volumes.Stop(s))
	}
	for _, tc := range []struct {
		name string
		// run does it after a full pass, and returns what the next job
		// read.
		run func(h optHarness) int64
	}{
		{"restarted before its commit's job ran", func(h optHarness) int64 {
			s := spec(vid)
			commitHeld(h)
			// Started again, the VM overwrites what it wrote: only the
			// revision, which the commit's job does not read, keeps it.
			h.Must(h.P.Volumes.Start(s))
			btrfstest.WriteAt(h.T, h.Path(vid+"-dirty.img"), 4*mib, noise(8, n))
			h.Must(h.P.Volumes.Stop(s))
			h.Jobs.Resume("test")
			h.Wait()
			return read(h.fullPass(vid))
		}},
		{"reverted before its commit's job ran, then back", func(h optHarness) int64 {
			s := spec(vid)
			commitHeld(h)
			h.Must(h.P.Volumes.Revert(s, ""))
			h.Jobs.Resume("test")
			h.Wait()
			h.Must(h.P.Volumes.Revert(s, ""))
			h.session(vid, func(string) {})
			return read(h.fullPass(vid))
		}},
		{"its commit's job dropped by a start outside the daemon", func(h optHarness) int64 {
			commitHeld(h)
			// Started outside the daemon, the volume runs without a start
			// the daemon recorded: no commit of it would release the job.
			dirty := h.Path(vid + "-dirty.img")
			btrfstest.Reflink(h.T, h.Path(vid+".img"), dirty)
			h.Jobs.Resume("test")
			h.Wait()
			if err := os.Remove(dirty); err != nil {
				h.T.Fatal(err)
			}
			h.session(vid, func(string) {})
			return read(h.fullPass(vid))
		}},
		{"imported from older data", func(h optHarness) int64 {
			src := filepath.Join(filepath.Dir(h.Dir), "source.img")
			if _, err := h.P.Volumes.ImportVolume(context.Background(), spec(vid), src); err != nil {
				h.T.Fatal(err)
			}
			h.Wait()
			return read(h.lastDone(vid))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newOptHarness(t)
			h.layOutTakenOver(vid, 16*mib)
			// Written before the full pass, in no volume.
			src := filepath.Join(filepath.Dir(h.Dir), "source.img")
			if err := os.WriteFile(src, noise(9, n), 0o600); err != nil {
				t.Fatal(err)
			}
			btrfstest.Sync(t, src)
			h.fullPass(vid)
			if got := tc.run(h); got < n {
				t.Errorf("the job read %d bytes, want the %d no job had examined", got, n)
			}
		})
	}
}

// read is what a job read of the data it planned: hashed by the dedup
// stage or examined by the compression stage.
func read(res optimizer.Result) int64 {
	return res.Counters.Get(optimizer.CountDedupBytesHashed) + res.Counters.Get(optimizer.CountCompressBytesExamined)
}
