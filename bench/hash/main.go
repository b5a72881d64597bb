// SPDX-License-Identifier: GPL-2.0-or-later

// Command hash measures the dedup index (pool/optimizer/dedupindex) against the
// targets of issue 4: hashing at least 1 GB/s per core on cached data, and
// a peak RSS of at most the index size plus 64 MiB. It prints:
//
//  1. the index at its default size for the pool: creating its file,
//     filling it with random hashes, looking up stored and unknown hashes
//     on one goroutine and on GOMAXPROCS, flushing it, and reloading it as
//     a restarted daemon would, with the peak RSS (VmHWM) of the running
//     and of the reloading phase;
//  2. hashing 4 KiB blocks of data already in memory, on one goroutine
//     and on GOMAXPROCS.
//
// The index runs first because the hashing phase's buffer would dominate
// the peak RSS. The index is a live, pointer-free heap object, so by
// default the garbage collector lets other garbage grow to its size before
// collecting; a memory limit (GOMEMLIMIT, or debug.SetMemoryLimit in the
// daemon) of the index size plus a budget bounds that. Run it with
//
//	make bench-hash BENCH_ARGS="-data 1073741824 -pool 1000000000000"
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

type config struct {
	data uint64 // bytes hashed
	pool uint64 // pool capacity the index is sized for
	ops  uint64 // inserts and lookups; 0: one per cell
	dir  string // where the index file goes
}

func main() {
	var cfg config
	flag.Uint64Var(&cfg.data, "data", 1<<30, "bytes of cached data to hash")
	flag.Uint64Var(&cfg.pool, "pool", 1e12, "pool capacity in bytes the index is sized for")
	flag.Uint64Var(&cfg.ops, "ops", 0, "inserts, then lookups, per pass (0: one per cell of the index)")
	flag.StringVar(&cfg.dir, "dir", os.TempDir(), "directory for the index file")
	flag.Parse()
	limit := "none"
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		limit = fmt.Sprintf("%d MiB", l/mib)
	}
	fmt.Printf("GOMAXPROCS %d, %s, memory limit %s\n", runtime.GOMAXPROCS(0), runtime.Version(), limit)
	if err := benchIndex(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench/hash:", err)
		os.Exit(1)
	}
	if err := benchHash(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench/hash:", err)
		os.Exit(1)
	}
}

const mib = 1 << 20

// rate formats n operations in d as millions per second.
func rate(n uint64, d time.Duration) string {
	return fmt.Sprintf("%6.2f M/s (%4.0f ns each)", float64(n)/d.Seconds()/1e6, float64(d.Nanoseconds())/float64(n))
}

// verdict compares a figure with its target.
func verdict(ok bool) string {
	if ok {
		return "meets target"
	}
	return "MISSES target"
}
