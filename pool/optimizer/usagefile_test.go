// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

func readUsageRecord(t *testing.T, dir string) (optimizer.UsageRecord, os.FileInfo) {
	t.Helper()
	name := filepath.Join(dir, optimizer.UsageFile)
	info, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var rec optimizer.UsageRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("%s: %v: %q", name, err, data)
	}
	return rec, info
}

// waitUsageRewritten waits for a background measurement (the pool open's)
// to replace what was at the file's name, before, with a regular file.
func waitUsageRewritten(t *testing.T, dir string, before os.FileInfo) optimizer.UsageRecord {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := os.Lstat(filepath.Join(dir, optimizer.UsageFile))
		if err == nil && info.Mode().IsRegular() && (before == nil || !os.SameFile(info, before)) {
			rec, _ := readUsageRecord(t, dir)
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatal("the usage file was not rewritten after the pool opened")
		}
	}
}

func (h optHarness) measurements() uint64 { return optimizer.UsageMeasurements(h.P.Optimizer) }

// waitMeasurements waits until the pool has been measured n times.
func (h optHarness) waitMeasurements(n uint64) {
	h.T.Helper()
	for deadline := time.Now().Add(10 * time.Second); h.measurements() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.T.Fatalf("the pool was measured %d times, want %d", h.measurements(), n)
		}
	}
}

// poolFiles are the files the usage file accounts for.
func poolFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for _, top := range volume.TopDirs {
		found, err := filepath.Glob(filepath.Join(dir, top, "*", "*"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, found...)
	}
	return files
}

// After each job the usage file holds compsize's figures for the pool's
// files and the bytes the jobs saved, which a restart keeps counting on.
func TestUsageFileFollowsJobsAcrossRestarts(t *testing.T) {
	h := newOptHarness(t)
	h.waitMeasurements(1) // the pool open's: the next is the job's
	s := spec("appvms/work/private")
	h.Must(h.P.Volumes.Create(s))
	h.Must(h.P.Volumes.Start(s))
	btrfstest.WriteAt(t, h.Path("appvms/work/private-dirty.img"), 0, btrfstest.Text("first", 32*mib))
	h.Must(h.P.Volumes.Stop(s))
	h.Wait()
	h.waitMeasurements(2)

	rec, info := readUsageRecord(t, h.Dir)
	want := measure(t, poolFiles(t, h.Dir)...).Total
	got := [3]uint64{rec.DiskUsage, rec.Uncompressed, rec.Referenced}
	if got != [3]uint64{want.DiskBytes, want.UncompressedBytes, want.ReferencedBytes} {
		t.Errorf("disk, uncompressed, referenced = %v, compsize's %+v", got, want)
	}
	if saved := h.Jobs.Counters().Get(optimizer.CountJobBytesSaved); rec.Saved != saved || saved < 16*mib {
		t.Errorf("saved %d, the jobs saved %d", rec.Saved, saved)
	}
	if rec.DiskUsage >= rec.Uncompressed || rec.DirPath != h.Dir || time.Since(time.Unix(rec.Time, 0)) > time.Minute {
		t.Errorf("record %+v", rec)
	}

	h.Close()
	h.Open()
	reopened := waitUsageRewritten(t, h.Dir, info)
	if reopened.Saved != rec.Saved || reopened.DiskUsage != rec.DiskUsage {
		t.Errorf("after reopening: %+v, before %+v", reopened, rec)
	}
	// The optimizer's totals are kept across the restart too.
	before := h.Jobs.Counters().Get(optimizer.CountJobBytesSaved)
	h.Must(h.P.Volumes.Start(s))
	// Guest writes are compressed as written; a copy of older data is
	// what the job still frees, by deduplicating it.
	btrfstest.WriteAt(t, h.Path("appvms/work/private-dirty.img"), 32*mib, btrfstest.Text("first", 16*mib))
	h.Must(h.P.Volumes.Stop(s))
	h.Wait()
	again, _ := readUsageRecord(t, h.Dir)
	if more := h.Jobs.Counters().Get(optimizer.CountJobBytesSaved) - before; more <= 0 || again.Saved != rec.Saved+more {
		t.Errorf("saved %d after a second job that saved %d, %d before", again.Saved, more, rec.Saved)
	}
}

// A corrupt file starts the count over and is replaced; planted symlinks
// are replaced, never written through.
func TestUsageFileRecoversAndFollowsNoSymlink(t *testing.T) {
	h := newOptHarness(t)
	name := filepath.Join(h.Dir, optimizer.UsageFile)
	waitUsageRewritten(t, h.Dir, nil) // written after the open
	h.Close()
	outside := filepath.Join(filepath.Dir(h.Dir), "outside")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, planted := range []string{name + "~", name} {
		if err := os.Remove(planted); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, planted); err != nil {
			t.Fatal(err)
		}
	}
	planted, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Open()
	rec := waitUsageRewritten(t, h.Dir, planted)
	if data, err := os.ReadFile(outside); err != nil || string(data) != "keep" {
		t.Fatalf("the file a symlink pointed to: %q, %v", data, err)
	}
	if rec.Saved != 0 || rec.Version != 1 {
		t.Fatalf("usage file %+v", rec)
	}

	h.Close()
	if err := os.WriteFile(name, []byte(`{"version":1,"saved":`), 0o600); err != nil {
		t.Fatal(err)
	}
	corrupt, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Open()
	if rec := waitUsageRewritten(t, h.Dir, corrupt); rec.Saved != 0 || rec.Version != 1 {
		t.Fatalf("after a corrupt file: %+v", rec)
	}
}

// The temp files of state and usage writes a crash cut short are gone
// once the pool opens again, not only after the next write of each in
// the background; a file not named so is kept.
func TestInterruptedWritesAreRemovedAtOpen(t *testing.T) {
	h := newOptHarness(t)
	h.Close()
	stateDir := filepath.Join(h.Dir, volume.StateDir)
	leftovers := []string{optimizer.UsageFile + "~", volume.StateDir + "/state.json~"}
	for _, name := range append(leftovers, volume.StateDir+"/keep") {
		if err := os.WriteFile(filepath.Join(h.Dir, name), []byte("{\"version\":1,"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.Open()
	for _, name := range leftovers {
		if _, err := os.Lstat(filepath.Join(h.Dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s, an unfinished write, outlived the pool's open: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, "keep")); err != nil {
		t.Errorf("a file of another name was removed: %v", err)
	}
}
