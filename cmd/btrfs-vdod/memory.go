// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
)

// workingAllowance is the memory the daemon needs besides its dedup
// indexes: a job's buffers and extent maps, requests in flight.
const workingAllowance = 48 << 20

// memoryLimit is the soft memory limit for open indexes of indexBytes in
// all, the zstd encoders' tables included (see OnIndexSized). The
// indexes are large, pointer-free live heap objects, so by default the
// garbage collector lets garbage grow to their size before it collects
// (GOGC=100): a 32 MiB index made a 116 MiB peak. A limit of the indexes
// plus a working allowance keeps the peak near what is needed.
func memoryLimit(indexBytes uint64) int64 {
	if indexBytes > math.MaxInt64-workingAllowance {
		return math.MaxInt64
	}
	return int64(indexBytes) + workingAllowance
}

// memoryReport returns the scheduler's index report that keeps the Go
// runtime's soft memory limit at memoryLimit of the pools' open indexes,
// which open lazily with their first job. An operator's GOMEMLIMIT wins:
// the daemon then leaves the limit alone.
func memoryReport(log *slog.Logger) func(indexBytes uint64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Debug("GOMEMLIMIT is set; not sizing the memory limit for the dedup indexes")
		return nil
	}
	return memoryLimiter(log, debug.SetMemoryLimit)
}

// memoryLimiter returns the index report that applies the limit with set
// and logs it, at debug level since each cold pass moves it, when it
// changes.
func memoryLimiter(log *slog.Logger, set func(int64) int64) func(indexBytes uint64) {
	var last int64
	return func(indexBytes uint64) {
		limit := memoryLimit(indexBytes)
		if limit == last {
			return
		}
		last = limit
		set(limit)
		log.Debug("memory limit", "bytes", limit, "indexes_and_encoders", indexBytes)
	}
}
