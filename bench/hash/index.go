// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
)

// rssSlack is the allowance over the index size.
const rssSlack = 64 * mib

// benchIndex times an index of the default size for cfg.pool, kept in a
// file under cfg.dir, and reports the peak RSS it needed.
func benchIndex(cfg config) error {
	dir, err := os.MkdirTemp(cfg.dir, "btrfs-vdo-bench-hash-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "dedup.idx")
	size := dedupindex.DefaultSize(cfg.pool)

	start := time.Now()
	f, _, err := openIndex(path, size)
	if err != nil {
		return err
	}
	created := time.Since(start)
	cells, _, _, _, _, _ := f.Stats()
	ops := cfg.ops
	if ops == 0 {
		ops = cells
	}
	fmt.Printf("\nindex for a %.2f TB pool: %d MiB, %d cells; %d operations per pass\n",
		float64(cfg.pool)/1e12, size/mib, cells, ops)
	fmt.Printf("  create file          %v\n", created.Round(time.Millisecond))
	operate(f.Index, ops)
	if err := flush(f); err != nil {
		return err
	}
	reportRSS("peak RSS, running", size)
	f = nil // as a restarted daemon, without the first index
	return reload(path, size)
}

// operate fills x and looks hashes up, on one goroutine and on GOMAXPROCS.
func operate(x *dedupindex.Index, ops uint64) {
	d := timed(func() { insertAll(x, 1, 0, ops) })
	_, used, _, _, _, evictions := x.Stats()
	fmt.Printf("  insert               %s; %d cells used, %d evicted\n", rate(ops, d), used, evictions)
	d = timed(func() { lookupAll(x, 1, ops) })
	_, _, hits, _, _, _ := x.Stats()
	fmt.Printf("  lookup, stored       %s; %.1f %% still stored\n", rate(ops, d), 100*float64(hits)/float64(ops))
	d = timed(func() { lookupAll(x, 2, ops) })
	fmt.Printf("  lookup, unknown      %s\n", rate(ops, d))
	procs := runtime.GOMAXPROCS(0)
	d = timed(func() { mixedParallel(x, ops, procs) })
	fmt.Printf("  lookup+insert, %d goroutines %s per pair\n", procs, rate(ops, d))
}

// flush times a flush of a full index, then of a few changes, and closes.
func flush(f *dedupindex.File) error {
	var err error
	d := timed(func() { _, err = f.Flush() })
	if err != nil {
		return err
	}
	fmt.Printf("  flush, all dirty     %v\n", d.Round(time.Millisecond))
	insertAll(f.Index, 3, 0, 1000)
	d = timed(func() { _, err = f.Flush() })
	if err != nil {
		return err
	}
	fmt.Printf("  flush, 1000 inserts  %v\n", d.Round(time.Microsecond))
	return f.Close()
}

// reload times reading the file back, with the peak RSS counted afresh.
func reload(path string, size uint64) error {
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	start := time.Now()
	f, how, err := openIndex(path, size)
	if err != nil {
		return err
	}
	if how != (dedupindex.Opened{}) {
		return fmt.Errorf("reopen: %+v", how)
	}
	fmt.Printf("  reload (read, verify) %v\n", time.Since(start).Round(time.Millisecond))
	reportRSS("peak RSS, reloading", size)
	return f.Close()
}

func reportRSS(what string, size uint64) {
	peak := peakRSS()
	fmt.Printf("%s: %d MiB = index + %d MiB; %s (<= index + %d MiB)\n", what,
		peak/mib, (int64(peak)-int64(size))/mib, verdict(peak <= size+rssSlack), rssSlack/mib)
}

// insertAll inserts n random hashes from seed, at addresses from base.
func insertAll(x *dedupindex.Index, seed, base, n uint64) {
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range n {
		x.Insert(r.Uint64(), (base+i)*dedupindex.BlockSize)
	}
}

// lookupAll looks up the n hashes that seed gives.
func lookupAll(x *dedupindex.Index, seed, n uint64) {
	r := rand.New(rand.NewPCG(seed, 0))
	var addrs []uint64
	for range n {
		addrs = x.Lookup(addrs[:0], r.Uint64())
	}
}

// mixedParallel runs n insert and lookup pairs on procs goroutines, as a
// commit's workers would: look up each new block, insert it if unknown.
func mixedParallel(x *dedupindex.Index, n uint64, procs int) {
	var wg sync.WaitGroup
	for p := range uint64(procs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(10+p, 0))
			var addrs []uint64
			for i := range n / uint64(procs) {
				h := r.Uint64()
				if addrs = x.Lookup(addrs[:0], h); len(addrs) == 0 {
					x.Insert(h, (p<<40+i)*dedupindex.BlockSize)
				}
			}
		}()
	}
	wg.Wait()
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// peakRSS returns VmHWM, the process's peak resident set, in bytes, or 0
// if the kernel does not say.
func peakRSS() uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.SplitAfter(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS sets VmHWM to the current RSS (Linux 4.0 and later).
func resetPeakRSS() {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		fmt.Fprintln(os.Stderr, "bench/hash: cannot reset the peak RSS:", err)
	}
}

// openIndex opens the index file at path through a root at its directory.
func openIndex(path string, size uint64) (*dedupindex.File, dedupindex.Opened, error) {
	root, err := fsroot.Open(filepath.Dir(path))
	if err != nil {
		return nil, dedupindex.Opened{}, err
	}
	defer root.Close()
	return dedupindex.Open(root, filepath.Base(path), size)
}
