// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer_test

import (
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// prose is n bytes of words drawn at random from a vocabulary of a few
// thousand: data that compresses, and better at a stronger zstd level, as
// a template's files do.
func prose(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	vocab := make([][]byte, 4096)
	for i := range vocab {
		vocab[i] = make([]byte, 3+r.IntN(8))
		for j := range vocab[i] {
			vocab[i][j] = 'a' + byte(r.IntN(26))
		}
	}
	var b bytes.Buffer
	for b.Len() < n {
		b.Write(vocab[r.IntN(len(vocab))])
		b.WriteByte(" \n"[min(r.IntN(12), 1)^1])
	}
	return b.Bytes()[:n]
}

// coldOutcome is what the cold-pass scenario leaves.
type coldOutcome struct {
	disk      uint64              // the pool files' data usage
	sharedRev uint64              // bytes of the template's image in extents its revision holds
	sharedApp uint64              // bytes of the AppVM's image in extents the template's image holds
	sums      map[string][32]byte // every pool file's content, by name
	passes    []optimizer.JobDone // the cold passes that ran
}

const (
	coldTemplate = "vm-templates/debian/root"
	coldAppVM    = "appvms/work/private"
)

// coldScenario commits a template's data twice (the second time with a
// block changed, so that its revision shares the rest) and an AppVM that
// copied half of it once, with jobs at zstd level 1, and, when cold is
// on, waits for the template's cold pass: with AfterCommits 1 its first
// commit's data is cold after its second, while the AppVM's is not.
func coldScenario(t *testing.T, cold bool) coldOutcome {
	h := optHarness{pooltest.NewHarnessWith(t, optimizer.SchedulerConfig{IdleIO: true, ZstdLevel: 1,
		Cold: optimizer.ColdPolicy{Enabled: cold, Level: 15, AfterCommits: 1, AfterAge: 1000 * time.Hour}})}
	data := prose(1, 24*mib)
	h.session(coldTemplate, func(dirty string) { btrfstest.WriteAt(t, dirty, 0, data) })
	h.session(coldAppVM, func(dirty string) { btrfstest.WriteAt(t, dirty, 0, data[:12*mib]) })
	h.session(coldTemplate, func(dirty string) { btrfstest.WriteAt(t, dirty, mib, []byte("changed")) })
	var out coldOutcome
	if cold {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for len(out.passes) == 0 && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			out.passes = coldPasses(h.Jobs.Recent())
		}
		h.Wait()
		out.passes = coldPasses(h.Jobs.Recent())
	}
	out.disk = h.poolDisk()
	out.sums = h.sumsByKind()
	img, app := h.Path(coldTemplate+".img"), h.Path(coldAppVM+".img")
	out.sharedRev = sharedBytes(t, img, h.revisionOf(coldTemplate))
	out.sharedApp = sharedBytes(t, app, img)
	return out
}

func coldPasses(done []optimizer.JobDone) []optimizer.JobDone {
	var out []optimizer.JobDone
	for _, d := range done {
		if d.Cold {
			out = append(out, d)
		}
	}
	return out
}

// sumsByKind is the content of every file of the pool's volumes but
// running images, by volume and kind: revisions' names hold the time.
func (h optHarness) sumsByKind() map[string][32]byte {
	h.T.Helper()
	out := map[string][32]byte{}
	h.eachPoolFile(func(vid string, f volume.File) {
		out[vid+" "+f.Kind().String()] = btrfstest.Digest(h.T, h.P.Volumes.Path(f))
	})
	return out
}

// revisionOf is the path of the volume's only revision.
func (h optHarness) revisionOf(vid string) string {
	h.T.Helper()
	files, err := h.P.Volumes.Files(vid)
	if err != nil {
		h.T.Fatal(err)
	}
	for _, f := range files {
		if f.Kind() == volume.RevisionFile {
			return h.P.Volumes.Path(f)
		}
	}
	h.T.Fatalf("%s has no revision", vid)
	return ""
}

// sharedBytes is how many bytes of a's data lie in disk extents b
// references too.
func sharedBytes(t *testing.T, a, b string) uint64 {
	t.Helper()
	inB := map[uint64]bool{}
	for _, e := range btrfstest.Extents(t, b) {
		inB[e.DiskBytenr] = e.DiskBytenr != 0
	}
	var n uint64
	for _, e := range btrfstest.Extents(t, a) {
		if inB[e.DiskBytenr] {
			n += e.Length
		}
	}
	return n
}

// The cold pass recompresses the template's cold data at the cold level
// in every file that holds it, its revision's and the AppVM's included,
// so the pool shrinks while every file keeps its content and its sharing;
// the AppVM's own data, one commit old, is left for later.
func TestColdPassRecompressesWithoutUnsharing(t *testing.T) {
	warm, cold := coldScenario(t, false), coldScenario(t, true)
	if len(cold.passes) != 1 || cold.passes[0].VID != coldTemplate || cold.passes[0].Err != nil {
		t.Fatalf("cold passes = %+v, want one of %s without error", cold.passes, coldTemplate)
	}
	res := cold.passes[0].Result
	t.Logf("pool data: %d without the cold pass, %d after it; recompressed %d bytes, saved %d",
		warm.disk, cold.disk, res.Counters.Get(optimizer.CountColdBytesRecompressed), res.Saved())
	if res.Counters.Get(optimizer.CountColdBytesRecompressed) == 0 || res.Saved() <= 0 {
		t.Errorf("cold pass recompressed %d bytes and saved %d, want both above 0",
			res.Counters.Get(optimizer.CountColdBytesRecompressed), res.Saved())
	}
	if cold.disk >= warm.disk {
		t.Errorf("pool data with the cold pass %d, without %d: want less", cold.disk, warm.disk)
	}
	if len(cold.sums) != len(warm.sums) {
		t.Fatalf("pool files: %d with the cold pass, %d without", len(cold.sums), len(warm.sums))
	}
	for name, sum := range warm.sums {
		if cold.sums[name] != sum {
			t.Errorf("%s changed content under the cold pass", name)
		}
	}
	if cold.sharedRev < warm.sharedRev || cold.sharedApp < warm.sharedApp {
		t.Errorf("sharing with the cold pass: revision %d, AppVM %d bytes; without: %d, %d",
			cold.sharedRev, cold.sharedApp, warm.sharedRev, warm.sharedApp)
	}
}

// optimize --cold rewrites a volume's data whatever its age, with the
// policy off: compressed data at the cold level, and the referenced parts
// of an uncompressed extent whose rest nothing references any more. Asked
// again, it finds nothing left to do.
func TestOptimizeColdTakesDataOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sessions []func(t *testing.T, dirty string)
		minSaved int64
	}{
		{"compressed data", []func(*testing.T, string){
			func(t *testing.T, dirty string) { btrfstest.WriteAt(t, dirty, 0, prose(2, 16*mib)) },
		}, mib},
		{"uncompressed bookends", []func(*testing.T, string){
			func(t *testing.T, dirty string) { btrfstest.WriteAt(t, dirty, 0, noise(3, 8*mib)) },
			// Its middle, overwritten, stays in the first revision alone,
			// which the third commit prunes.
			func(t *testing.T, dirty string) { btrfstest.WriteAt(t, dirty, 2*mib, noise(4, 4*mib)) },
			func(t *testing.T, dirty string) { btrfstest.WriteAt(t, dirty, 12*mib, noise(5, 4096)) },
		}, 4 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := optHarness{pooltest.NewHarnessWith(t, optimizer.SchedulerConfig{IdleIO: true, ZstdLevel: 1,
				Cold: optimizer.ColdPolicy{Level: 15}})}
			for _, write := range tc.sessions {
				h.session(coldAppVM, func(dirty string) { write(t, dirty) })
			}
			img := h.Path(coldAppVM + ".img")
			sum := btrfstest.Digest(t, img)
			for i, minSaved := range []int64{tc.minSaved, 0} {
				pass := h.optimizeCold(coldAppVM)
				n := pass.Result.Counters.Get(optimizer.CountColdBytesRecompressed)
				t.Logf("request %d: rewrote %d bytes, saved %d", i, n, pass.Result.Saved())
				if saved := pass.Result.Saved(); saved < minSaved || (minSaved == 0) != (saved == 0) {
					t.Errorf("request %d: saved %d, want at least %d, and 0 only if that is the minimum", i, saved, minSaved)
				}
				if btrfstest.Digest(t, img) != sum {
					t.Fatalf("request %d: the image changed content", i)
				}
				if c := pass.Result.Counters.Get(optimizer.CountCompressBytesCompressed); c != 0 {
					t.Errorf("request %d: the cold pass counted %d bytes as the compress stage's too", i, c)
				}
			}
		})
	}
}

// optimizeCold asks for vid's cold pass and returns its outcome.
func (h optHarness) optimizeCold(vid string) optimizer.JobDone {
	h.T.Helper()
	id, err := h.P.Optimizer.OptimizeCold(vid)
	if err != nil {
		h.T.Fatal(err)
	}
	h.Wait()
	for _, d := range h.Jobs.Recent() {
		if d.ID == id && d.Cold && d.Err == nil {
			return d
		}
	}
	h.T.Fatalf("no cold pass %d without error among %+v", id, h.Jobs.Recent())
	return optimizer.JobDone{}
}

// Runs another volume's extents hold, too short for the dedup stage to
// share (a quarter of each source extent), are moved there by the cold
// pass, through every reference, and left out of the volume's own copy:
// the pool shrinks, the volumes come to share them, and no file changes.
func TestColdPassMovesRunsHeldElsewhere(t *testing.T) {
	const unit, run = 128 << 10, 32 << 10
	h := optHarness{pooltest.NewHarnessWith(t, optimizer.SchedulerConfig{IdleIO: true, ZstdLevel: 1,
		Cold: optimizer.ColdPolicy{Level: 15}})}
	source := prose(20, 8*unit)
	h.session(coldTemplate, func(dirty string) { btrfstest.WriteAt(t, dirty, 0, source) })
	var mixed []byte
	for i := range 8 {
		mixed = append(mixed, source[i*unit:i*unit+run]...)
		mixed = append(mixed, prose(uint64(21+i), unit-run)...)
	}
	h.session(coldAppVM, func(dirty string) { btrfstest.WriteAt(t, dirty, 0, mixed) })
	img, src := h.Path(coldAppVM+".img"), h.Path(coldTemplate+".img")
	before, sums, sharedBefore := h.poolDisk(), h.sumsByKind(), sharedBytes(t, img, src)
	// The extents holding a run: each must be freed, not kept for the rest.
	held := map[uint64]bool{}
	for _, e := range btrfstest.Extents(t, img) {
		for i := range uint64(8) {
			held[e.DiskBytenr] = held[e.DiskBytenr] || (e.DiskBytenr != 0 && e.Offset <= i*unit && i*unit < e.Offset+e.Length)
		}
	}

	pass := h.optimizeCold(coldAppVM)
	moved := pass.Result.Counters.Get(optimizer.CountColdBytesSharedElsewhere)
	after, sharedAfter := h.poolDisk(), sharedBytes(t, img, src)
	t.Logf("pool data %d -> %d; moved %d bytes; the AppVM's image shares %d -> %d bytes with the template's",
		before, after, moved, sharedBefore, sharedAfter)
	if moved != 8*run {
		t.Errorf("moved %d bytes to the template's extents, want the %d its runs hold", moved, 8*run)
	}
	if sharedAfter < sharedBefore+8*run {
		t.Errorf("the AppVM's image shares %d bytes with the template's after the pass, %d before: want the runs more",
			sharedAfter, sharedBefore)
	}
	if after >= before {
		t.Errorf("pool data %d after the cold pass, %d before: want less", after, before)
	}
	for _, e := range btrfstest.Extents(t, img) {
		if held[e.DiskBytenr] {
			t.Fatalf("the AppVM's image still references the extent at %d, which held a run, after the pass", e.DiskBytenr)
		}
	}
	if got := h.sumsByKind(); !maps.Equal(got, sums) {
		t.Error("a file of the pool changed content under the cold pass")
	}
}
