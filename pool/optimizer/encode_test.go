// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
)

// executableLike mixes runs of random bytes with runs of text, as code and
// tables do in an executable: zstd shrinks it by a third or more, while
// btrfs's sampling takes it for incompressible.
func executableLike(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := []string{"init", "open", "read", "close", "error", "buffer", "length", "return"}
	b := make([]byte, 0, n+8192)
	for len(b) < n {
		if rng.IntN(2) == 0 {
			for range 512 + rng.IntN(7680) {
				b = append(b, byte(rng.Uint32()))
			}
			continue
		}
		for range 100 + rng.IntN(1400) {
			b = append(b, words[rng.IntN(len(words))]...)
			b = append(b, ' ')
		}
	}
	return b[:n]
}

// A copy's data is stored zstd-compressed whatever btrfs would have
// guessed of it, reads back unchanged, and where the kernel takes no
// encoded writes (here: not btrfs) is written plainly, said once.
func TestCopyEncoderWrite(t *testing.T) {
	data := executableLike(4*mib+5*blockSize, 1)
	tests := []struct {
		name       string
		dir        func(t *testing.T) string
		compressed bool
	}{
		{"btrfs", func(t *testing.T) string { return btrfstest.Mount(t, 0) }, true},
		{"not btrfs", func(t *testing.T) string { return btrfstest.Tmpfs(t) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			said := 0
			enc := newCopyEncoder(0, 0, 0, func(error) { said++ })
			// As copies are made: with the compression property, where the
			// filesystem has it.
			c, err := newCompressedCopy(openRoot(t, tt.dir(t)), enc)
			if err != nil && tt.compressed {
				t.Fatal(err)
			}
			f := c.File
			if !tt.compressed {
				if f, err = os.Create(filepath.Join(tt.dir(t), "copy")); err != nil {
					t.Fatal(err)
				}
			}
			defer f.Close()
			for i := range 2 {
				if err := enc.write(f, data, copyBase+uint64(i*len(data))); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2 {
				got := make([]byte, len(data))
				if _, err := f.ReadAt(got, int64(copyBase+i*len(data))); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("copy %d reads back other bytes", i)
				}
			}
			if want := map[bool]int{true: 0, false: 1}[tt.compressed]; said != want {
				t.Fatalf("fallback said %d times, want %d", said, want)
			}
			if !tt.compressed {
				return
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			var logical, disk uint64
			exts, err := btrfs.Extents(f, 0) // the copy has no name to open
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range exts {
				if e.IsHole() {
					continue
				}
				if e.Compression != btrfs.CompressZstd {
					t.Errorf("extent %+v is not zstd", e)
				}
				logical, disk = logical+e.Length, disk+e.DiskNumBytes
			}
			if logical != uint64(2*len(data)) || disk > logical*3/4 {
				t.Fatalf("%d bytes stored in %d: want all of %d, in at most 3/4", logical, disk, 2*len(data))
			}
		})
	}
}

// A 128 KiB unit is stored as two 64 KiB compressed extents when they take
// no more sectors than one, so that a random read decompresses half as
// much, and whole when its halves compress worse apart or the encoder
// keeps units whole.
func TestCopyEncoderSplitsUnitsWhenHalvesCostNoMore(t *testing.T) {
	const half = btrfs.MaxCompressedExtent / 2
	rng := rand.New(rand.NewPCG(3, 1))
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// 30 KiB of noise then zeros: either half's frame takes 8 sectors,
	// the whole unit's 16.
	halfApart := func() []byte { return append(noise(30<<10), make([]byte, half-30<<10)...) }
	// The second half repeats the first: the whole unit's frame takes about
	// the sectors of one half's.
	repeated := func() []byte { h := halfApart(); return append(h, h...) }
	// A half of noise stored plain and a half of zeros in one sector take
	// the sectors of the whole unit's frame.
	plainHalf := func() []byte { return append(noise(half), make([]byte, half)...) }
	const zstd, plain = "zstd", "plain"
	tests := []struct {
		name       string
		data       []byte
		wholeUnits bool
		extents    []string // the unit's, in order: length and how stored
	}{
		{"halves apart cost no more", append(halfApart(), halfApart()...), false, []string{"65536 zstd", "65536 zstd"}},
		{"halves alike", repeated(), false, []string{"131072 zstd"}},
		{"short unit", halfApart(), false, []string{"65536 zstd"}},
		{"one half plain", plainHalf(), false, []string{"65536 plain", "65536 zstd"}},
		{"units kept whole", append(halfApart(), halfApart()...), true, []string{"131072 zstd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := newCopyEncoder(0, 0, 0, func(err error) { t.Fatal(err) })
			enc.wholeUnits = tt.wholeUnits
			c, err := newCompressedCopy(openRoot(t, btrfstest.Mount(t, 0)), enc)
			if err != nil {
				t.Fatal(err)
			}
			defer c.remove()
			if err := enc.write(c.File, tt.data, copyBase); err != nil {
				t.Fatal(err)
			}
			if err := c.Sync(); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tt.data))
			if _, err := c.ReadAt(got, copyBase); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Fatal("the copy reads back other bytes")
			}
			exts, err := btrfs.Extents(c.File, 0)
			if err != nil {
				t.Fatal(err)
			}
			var stored []string
			for _, e := range exts {
				if e.IsHole() {
					continue
				}
				if e.ExtentOffset != 0 || e.RAMBytes != e.Length {
					t.Errorf("extent %+v: want a whole extent", e)
				}
				how := map[bool]string{true: zstd, false: plain}[e.Compression == btrfs.CompressZstd]
				stored = append(stored, fmt.Sprintf("%d %s", e.Length, how))
			}
			if !slices.Equal(stored, tt.extents) {
				t.Fatalf("extents %q, want %q", stored, tt.extents)
			}
		})
	}
}

// Copies are written batch after batch: once warm, the encoder reuses its
// buffers instead of making a frame arena per write.
func TestCopyEncoderReusesItsBuffers(t *testing.T) {
	data := executableLike(2*mib, 2)
	enc := newCopyEncoder(0, 0, 0, func(err error) { t.Fatal(err) })
	c, err := newCompressedCopy(openRoot(t, btrfstest.Mount(t, 0)), enc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.remove()
	write := func(i int) {
		if err := enc.write(c.File, data, copyBase+uint64(i*len(data))); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i <= 4; i++ {
		write(i)
	}
	runtime.ReadMemStats(&after)
	// A fresh arena per write would be 2 MiB each.
	if perWrite := (after.TotalAlloc - before.TotalAlloc) / 4; perWrite >= mib {
		t.Fatalf("%d bytes allocated per write of %d", perWrite, len(data))
	}
}

// The jobs' encoders are kept by level and CPUs, and the memory limit
// has room for their tables. A cold pass makes its own, on one CPU,
// keeping units whole, counted until the run releases it.
func TestColdEncoderIsTheRunsAndCounted(t *testing.T) {
	var reported []uint64
	s := NewScheduler(SchedulerConfig{Cold: ColdPolicy{Level: 15}, OnIndexSized: func(total uint64) {
		reported = append(reported, total)
	}}, logtest.Discard(), nil)
	jobs := s.encoderFor(encoderKey{level: 15})
	if s.encoderFor(encoderKey{level: 15}) != jobs || s.encoderFor(encoderKey{level: 3}) == jobs ||
		s.encoderFor(encoderKey{level: 15, parallel: 1}) == jobs {
		t.Fatal("the jobs' encoders are not kept by key")
	}
	// The jobs' encoders are counted for good: 35 MiB a CPU at level 15.
	jobsTables := reported[len(reported)-1]
	if least := btrfs.ZstdEncoderBytes(15) * uint64(runtime.GOMAXPROCS(0)+1); jobsTables < least {
		t.Fatalf("the jobs' encoders count %d bytes, at least %d expected", jobsTables, least)
	}
	cold, release := s.coldEncoder()
	again, releaseAgain := s.coldEncoder()
	if cold == jobs || cold == again || cold.parallel != 1 || !cold.wholeUnits ||
		jobs.parallel != runtime.GOMAXPROCS(0) || jobs.wholeUnits {
		t.Fatalf("jobs' and cold encoders: same %v, cold twice the same %v, CPUs %d and %d, whole units %v and %v",
			cold == jobs, cold == again, jobs.parallel, cold.parallel, jobs.wholeUnits, cold.wholeUnits)
	}
	releaseAgain()
	release()
	tables := btrfs.ZstdEncoderBytes(15)
	if got, want := reported[3:], []uint64{jobsTables + tables, jobsTables + 2*tables, jobsTables + tables, jobsTables}; !slices.Equal(got, want) {
		t.Fatalf("memory reported for the cold encoders %v, want %v", got, want)
	}
}
