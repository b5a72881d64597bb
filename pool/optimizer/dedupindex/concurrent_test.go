// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestConcurrent runs inserts, lookups, marks and erases from several
// goroutines, many on the same buckets, while the index is written out;
// run it under -race.
func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		ops     = 5000
	)
	x := newIndex(t, 16*bucketBytes) // few buckets: stripes are contended
	img := &image{b: encode(t, x)}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 0))
			for range ops {
				h, a := r.Uint64N(5000), addr(r.IntN(4))
				switch r.IntN(4) {
				case 0, 1:
					x.Insert(h, a)
				case 2:
					for _, got := range x.Lookup(nil, h) {
						if got%BlockSize != 0 {
							t.Errorf("Lookup returned a flagged address %#x", got)
						}
					}
				case 3:
					if !x.MarkUseful(h, a) {
						x.Erase(h, a)
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := x.WriteDirty(img); err != nil {
				t.Error(err)
			}
			if _, err := x.WriteTo(io.Discard); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	close(done)
	writer.Wait()
	checkAll(t, x)
	if _, err := x.WriteDirty(img); err != nil {
		t.Fatal(err)
	}
	y, err := ReadFrom(bytes.NewReader(img.b), math.MaxUint64)
	if err != nil {
		t.Fatalf("image written during the run: %v", err)
	}
	checkAll(t, y)
	_, _, hits, misses, _, _ := x.Stats()
	if hits+misses == 0 {
		t.Fatal("no lookups counted")
	}
}
