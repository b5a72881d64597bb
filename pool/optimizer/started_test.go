// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// A dirty image whose start the pool never recorded (left by another
// driver, or a start whose record a crash lost) holds data written before
// its reused start: its commit's job finds the new data by the newest
// revision, not from the reused start's generation, and optimizes it all.
func TestReusedDirtyImageWithoutStartIsOptimizedWhole(t *testing.T) {
	h := newOptHarness(t)
	s := h.committed("appvms/work/private", 4*mib)
	img, dirty := h.Path(s.VID+".img"), h.Path(s.VID+"-dirty.img")
	btrfstest.Reflink(t, img, dirty)
	// Written uncompressed, as the pool's directory would not have it.
	btrfstest.SetFlags(t, dirty, btrfs.FlagNoCompress, btrfs.FlagCompress)
	btrfstest.WriteAt(t, dirty, 8*mib, btrfstest.Text("before the start", 16*mib))
	btrfstest.Sync(t, dirty)
	if z := zstdBytes(measure(t, dirty)); z > 4*mib {
		t.Fatalf("the data was compressed as it was written: %d bytes zstd", z)
	}
	// A later transaction: the generation moves past the data.
	other := filepath.Join(filepath.Dir(h.Dir), "later")
	if err := os.WriteFile(other, []byte("later"), 0o600); err != nil {
		t.Fatal(err)
	}
	btrfstest.Sync(t, other)
	want := btrfstest.Digest(t, dirty)

	h.Must(h.P.Volumes.Start(s)) // reuses the dirty image
	h.Must(h.P.Volumes.Stop(s))
	h.Wait()
	if btrfstest.Digest(t, img) != want {
		t.Fatal("the commit and its job changed the data")
	}
	if z := zstdBytes(measure(t, img)); z < 15*mib {
		t.Errorf("the data written before the reused start was left: %d bytes zstd", z)
	}
}

// A start returns without waiting for the pool's state to be written:
// its start generation follows with the next batch of state changes.
func TestStartRecordsItsGenerationWithoutWaiting(t *testing.T) {
	h := newOptHarness(t)
	s := h.committed("appvms/work/private", mib)
	time.Sleep(500 * time.Millisecond) // what the job's end changed is written
	before := optimizer.StateWrites(h.P.Optimizer)
	h.Must(h.P.Volumes.Start(s))
	if n := optimizer.StateWrites(h.P.Optimizer) - before; n != 0 {
		t.Fatalf("the start wrote the state %d times before returning", n)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var st struct{ Started map[string]uint64 }
		data, err := os.ReadFile(filepath.Join(h.Dir, volume.StateDir, "state.json"))
		if err == nil {
			err = json.Unmarshal(data, &st)
		}
		if err != nil {
			t.Fatal(err)
		}
		if st.Started[s.VID] != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the start's generation was never written")
		}
	}
}

// A precache file-reflink made before the daemon took the pool over has
// no compression property; once a job went through the volume, a start
// from it hands the VM a dirty image whose writes are compressed as they
// are written, as from a precache the pool's jobs made.
func TestStartFromATakenOverPrecacheCompressesWrites(t *testing.T) {
	h := newOptHarness(t)
	const vid = "appvms/old/private"
	img, _ := h.layOutTakenOver(vid, 4*mib)
	precache := h.Path(vid + "-precache.img")
	btrfstest.Reflink(t, img, precache)
	btrfstest.SetFlags(t, precache, btrfs.FlagNoCompress, btrfs.FlagCompress)
	h.fullPass(vid)

	h.Must(h.P.Volumes.Start(spec(vid)))
	dirty := h.Path(vid + "-dirty.img")
	btrfstest.WriteAt(t, dirty, 8*mib, btrfstest.Text("the VM's", 8*mib))
	btrfstest.Sync(t, dirty)
	if z := zstdBytes(measure(t, dirty)); z < 8*mib {
		t.Errorf("%d bytes of the VM's 8 MiB written compressed", z)
	}
}
