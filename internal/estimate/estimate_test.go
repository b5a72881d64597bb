// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		kind   fileKind
		volume string
	}{
		{"private.img", kindImage, "private"},
		{"root-precache.img", kindPrecache, "root"},
		{"private.img.12@2026-11-02T10:00:00Z", kindRevision, "private"},
		{"private-dirty.img", kindOther, "private"},
		{"private-import.img", kindOther, "private"},
		{"private.img~a1b2c3", kindOther, "private.img"},
		{"notes.txt", kindOther, "notes.txt"},
	}
	for _, tt := range tests {
		kind, vol := classify(tt.name)
		if kind != tt.kind || vol != tt.volume {
			t.Errorf("classify(%q) = %v, %q; want %v, %q", tt.name, kind, vol, tt.kind, tt.volume)
		}
	}
}

func TestLiveSpans(t *testing.T) {
	tests := []struct {
		name  string
		refs  []ref
		spans []span
		bytes uint64
	}{
		{"one", []ref{{extentOffset: 0, length: 8192}}, []span{{0, 8192}}, 8192},
		{"same range twice", []ref{{extentOffset: 4096, length: 4096}, {extentOffset: 4096, length: 4096}}, []span{{4096, 4096}}, 4096},
		{"overlapping", []ref{{extentOffset: 8192, length: 8192}, {extentOffset: 0, length: 12288}}, []span{{0, 16384}}, 16384},
		{"bookend gap", []ref{{extentOffset: 0, length: 4096}, {extentOffset: 12288, length: 4096}}, []span{{0, 4096}, {12288, 4096}}, 8192},
		{"preallocated part", []ref{{extentOffset: 0, length: 4096}, {extentOffset: 4096, length: 8192, prealloc: true}}, []span{{0, 4096}}, 4096},
	}
	for _, tt := range tests {
		spans, n := liveSpans(tt.refs, false)
		if !slices.Equal(spans, tt.spans) || n != tt.bytes {
			t.Errorf("%s: %v, %d; want %v, %d", tt.name, spans, n, tt.spans, tt.bytes)
		}
	}
}

func TestRatioOf(t *testing.T) {
	tests := []struct {
		name   string
		ys, xs []float64
		f      float64
		r, se  float64
		ok     bool
	}{
		{"constant ratio has no error", []float64{1, 2, 3}, []float64{2, 4, 6}, 0.1, 0.5, 0, true},
		{"census has no error", []float64{1, 4}, []float64{2, 4}, 1, 5.0 / 6, 0, true},
		// r = 1; residuals 1, -1; s² = 2; x̄ = 2; (1-0.5)·2/2/4 = 0.125.
		{"spread", []float64{3, 1}, []float64{2, 2}, 0.5, 1, math.Sqrt(0.125), true},
		{"one unit of many is a guess", []float64{1}, []float64{2}, 0.5, 0.5, 0.25, false},
		{"nothing", nil, nil, 0, 0, 0, false},
	}
	for _, tt := range tests {
		got, ok := ratioOf(tt.ys, tt.xs, tt.f)
		if ok != tt.ok || math.Abs(got.r-tt.r) > 1e-12 || math.Abs(got.se-tt.se) > 1e-12 {
			t.Errorf("%s: %+v, %v; want r %v se %v, %v", tt.name, got, ok, tt.r, tt.se, tt.ok)
		}
	}
}

// A content sample counts the duplicates of a pool with many distinct
// repeated contents within its interval of the exact count.
func TestContentSampleWithinInterval(t *testing.T) {
	dir := filepath.Join(btrfstest.Mount(t, 0), "pool")
	rng := rand.New(rand.NewPCG(1, 2))
	blocks := make([][]byte, 2048)
	for i := range blocks {
		blocks[i] = make([]byte, blockSize)
		for j := range blocks[i] {
			blocks[i][j] = byte(rng.Uint32())
		}
	}
	// Each VM's image repeats a random choice of the blocks: contents
	// occur from once to many times across the pool.
	used := map[int]bool{}
	for _, vm := range []string{"a", "b", "c"} {
		var data []byte
		for range 3000 {
			i := rng.IntN(len(blocks))
			used[i] = true
			data = append(data, blocks[i]...)
		}
		writeFile(t, filepath.Join(dir, "appvms", vm, "private.img"), data)
	}
	exact, err := Run(context.Background(), dir, Options{SampleBytes: MinSampleBytes})
	if err != nil {
		t.Fatal(err)
	}
	if exact.ContentSampleRate != 1 || exact.Total.DuplicateErrorBytes > 2*blockSize {
		t.Fatalf("exact run sampled contents: rate %v, error %d", exact.ContentSampleRate, exact.Total.DuplicateErrorBytes)
	}
	want := uint64(3*3000-len(used)) * blockSize // all but the first copy of each
	if exact.Total.DuplicateBytes != want {
		t.Errorf("exact duplicates %d, want %d", exact.Total.DuplicateBytes, want)
	}
	sampled, err := Run(context.Background(), dir, Options{SampleBytes: MinSampleBytes, MaxEntries: 2000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	diff := math.Abs(float64(sampled.Total.DuplicateBytes) - float64(exact.Total.DuplicateBytes))
	t.Logf("duplicates: exact %d, content sample at rate %.3f: %d ± %d", exact.Total.DuplicateBytes,
		sampled.ContentSampleRate, sampled.Total.DuplicateBytes, sampled.Total.DuplicateErrorBytes)
	if sampled.ContentSampleRate >= 0.5 || diff > float64(sampled.Total.DuplicateErrorBytes) || sampled.Total.DuplicateErrorBytes == 0 {
		t.Errorf("content sample: %d ± %d at rate %v, exact %d", sampled.Total.DuplicateBytes,
			sampled.Total.DuplicateErrorBytes, sampled.ContentSampleRate, exact.Total.DuplicateBytes)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesWhatIsNoPool(t *testing.T) {
	mnt := btrfstest.Mount(t, 0)
	empty := filepath.Join(mnt, "empty")
	vmsOnly := filepath.Join(mnt, "vms-only")
	for _, d := range []string{empty, filepath.Join(vmsOnly, "appvms", "idle")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, dir string
		ok        bool
	}{
		{"not on btrfs", btrfstest.Tmpfs(t), false},
		{"no VM directory", empty, false},
		{"missing", filepath.Join(mnt, "none"), false},
		{"VMs without images", vmsOnly, true},
	}
	for _, tt := range tests {
		r, err := Run(context.Background(), tt.dir, Options{})
		if (err == nil) != tt.ok || (tt.ok && (len(r.VMs) != 1 || r.Total.DiskBytes != 0)) {
			t.Errorf("%s: %+v, %v", tt.name, r, err)
		}
	}
}
