// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
)

// hashRounds is how often each pass runs; the best round is reported, as
// the data is cached and only noise makes a round slower.
const hashRounds = 3

// benchHash hashes cfg.data bytes of random data in memory.
func benchHash(cfg config) error {
	n := cfg.data / dedupindex.BlockSize
	if n == 0 {
		return fmt.Errorf("-data %d is less than one block", cfg.data)
	}
	data := make([]byte, n*dedupindex.BlockSize)
	rand.NewChaCha8([32]byte{4}).Read(data) // also faults every page in
	out := make([]uint64, n)
	procs := runtime.GOMAXPROCS(0)

	one := best(func() { dedupindex.HashBlocks(data, out) })
	all := best(func() { hashParallel(data, out, procs) })
	gbs := func(d time.Duration) float64 { return float64(len(data)) / d.Seconds() / 1e9 }
	fmt.Printf("\nhashing %d MiB of cached data in 4 KiB blocks (xxhash64), best of %d\n", len(data)/mib, hashRounds)
	fmt.Printf("  1 goroutine          %6.2f GB/s per core  %s (>= 1 GB/s)\n", gbs(one), verdict(gbs(one) >= 1))
	fmt.Printf("  %2d goroutines        %6.2f GB/s, %.2f GB/s per core\n", procs, gbs(all), gbs(all)/float64(procs))
	fmt.Printf("peak RSS with the data buffer: %d MiB\n", peakRSS()/mib)
	return nil
}

func best(f func()) time.Duration {
	var min time.Duration
	for i := range hashRounds {
		start := time.Now()
		f()
		if d := time.Since(start); i == 0 || d < min {
			min = d
		}
	}
	return min
}

// hashParallel splits data into one part per goroutine.
func hashParallel(data []byte, out []uint64, procs int) {
	blocks := len(out)
	var wg sync.WaitGroup
	for p := range procs {
		lo, hi := blocks*p/procs, blocks*(p+1)/procs
		wg.Add(1)
		go func() {
			defer wg.Done()
			dedupindex.HashBlocks(data[lo*dedupindex.BlockSize:hi*dedupindex.BlockSize], out[lo:hi])
		}()
	}
	wg.Wait()
}
