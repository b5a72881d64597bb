// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Counter is one of the optimizer's event counters. As in bees, each is
// counted where the decision it counts is made, and named by its stage:
// job_, compress_ (whatever judges data for compression), dedup_, cold_
// (the cold pass).
// docs/counters.md describes every one; a test holds it to counterTable.
type Counter int

// The counters, in the order counterTable lists them.
const (
	CountJobDone Counter = iota
	CountJobFailed
	CountJobBytesSaved
	CountJobCommits
	CountCompressBytesExamined
	CountCompressBytesCompressed
	CountCompressBytesSkippedShared
	CountDedupTries
	CountDedupHits
	CountDedupMisses
	CountDedupBytesHashed
	CountDedupBytesFreed
	CountDedupBytesRewritten
	CountDedupBytesKeptWouldGrow
	CountDedupIoctlMs
	CountDedupZeroBlocksPunched
	CountColdBytesExamined
	CountColdBytesRecompressed
	CountColdBytesSkippedShared
	CountColdBytesSharedElsewhere
	numCounters
)

// counterTable names and explains each counter. A name ending in _ms
// counts time, kept in nanoseconds and reported in milliseconds.
var counterTable = [numCounters]struct{ name, doc string }{
	CountJobDone:                    {"job_done", "jobs finished without error"},
	CountJobFailed:                  {"job_failed", "jobs finished with an error"},
	CountJobBytesSaved:              {"job_bytes_saved", "disk space the jobs freed, measured after each job"},
	CountJobCommits:                 {"job_commits", "transaction commits the jobs made; a plan shares one begun after its files last changed"},
	CountCompressBytesExamined:      {"compress_bytes_examined", "logical bytes of uncompressed extents judged for compression"},
	CountCompressBytesCompressed:    {"compress_bytes_compressed", "logical bytes rewritten compressed"},
	CountCompressBytesSkippedShared: {"compress_bytes_skipped_shared", "logical bytes left alone: shared beyond the volume"},
	CountDedupTries:                 {"dedup_tries", "index lookups that returned an address"},
	CountDedupHits:                  {"dedup_hits", "lookups that found the same bytes at an address"},
	CountDedupMisses:                {"dedup_misses", "lookups whose addresses held other bytes, or none resolved"},
	CountDedupBytesHashed:           {"dedup_bytes_hashed", "bytes of non-zero blocks hashed"},
	CountDedupBytesFreed:            {"dedup_bytes_freed", "disk bytes of the extents taken apart that are free once committed"},
	CountDedupBytesRewritten:        {"dedup_bytes_rewritten", "bytes rewritten compressed so that their extent is freed whole"},
	CountDedupBytesKeptWouldGrow:    {"dedup_bytes_kept_would_grow", "logical bytes of compressed extents kept: their copy would take more space"},
	CountDedupIoctlMs:               {"dedup_ioctl_ms", "time spent in FIDEDUPERANGE"},
	CountDedupZeroBlocksPunched:     {"dedup_zero_blocks_punched", "zero or preallocated blocks punched into holes"},
	CountColdBytesExamined:          {"cold_bytes_examined", "logical bytes of cold extents read to be rewritten at the cold level"},
	CountColdBytesRecompressed:      {"cold_bytes_recompressed", "logical bytes of cold extents rewritten, every reference moved"},
	CountColdBytesSkippedShared:     {"cold_bytes_skipped_shared", "logical bytes of cold extents left alone: referenced beyond the pool's committed files"},
	CountColdBytesSharedElsewhere:   {"cold_bytes_shared_elsewhere", "logical bytes of replaced cold extents that now share another extent of the pool, left out of their copy"},
}

// Name is the counter's name, as the jobs op and docs/counters.md give it.
func (k Counter) Name() string { return counterTable[k].name }

// Doc says what the counter counts.
func (k Counter) Doc() string { return counterTable[k].doc }

func (k Counter) timed() bool { return strings.HasSuffix(k.Name(), "_ms") }

// AllCounters lists every counter, in table order.
func AllCounters() []Counter {
	all := make([]Counter, numCounters)
	for k := range all {
		all[k] = Counter(k)
	}
	return all
}

// Counters holds a value for every counter: one job's (Result), or the
// scheduler's totals since the daemon started. Its JSON form, as kept in
// the daemon's state, is Map's.
type Counters struct{ v [numCounters]int64 }

// Get returns k's value, a time in milliseconds.
func (c Counters) Get(k Counter) int64 {
	if k.timed() {
		return c.v[k] / int64(time.Millisecond)
	}
	return c.v[k]
}

func (c *Counters) add(k Counter, n uint64) { c.v[k] += int64(n) }

func (c *Counters) addTime(k Counter, d time.Duration) { c.v[k] += int64(d) }

func (c *Counters) merge(o Counters) {
	for k := range c.v {
		c.v[k] += o.v[k]
	}
}

// Examined, Compressed and SkippedShared are what a job's outcome
// reports, whichever stage counted it: the compress stage and the dedup
// stage, or a cold pass.
func (c Counters) Examined() uint64 {
	return uint64(c.Get(CountCompressBytesExamined) + c.Get(CountColdBytesExamined))
}

func (c Counters) Compressed() uint64 {
	return uint64(c.Get(CountCompressBytesCompressed) + c.Get(CountColdBytesRecompressed))
}

func (c Counters) SkippedShared() uint64 {
	return uint64(c.Get(CountCompressBytesSkippedShared) + c.Get(CountColdBytesSkippedShared))
}

// Finished counts the jobs that ended, done or failed.
func (c Counters) Finished() uint64 { return uint64(c.v[CountJobDone] + c.v[CountJobFailed]) }

// Map returns every counter's value by name.
func (c Counters) Map() map[string]int64 {
	m := make(map[string]int64, numCounters)
	for _, k := range AllCounters() {
		m[k.Name()] = c.Get(k)
	}
	return m
}

// String lists the counters that are not zero, by name.
func (c Counters) String() string {
	var parts []string
	for _, k := range AllCounters() {
		if v := c.Get(k); v != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k.Name(), v))
		}
	}
	return strings.Join(parts, " ")
}

// MarshalJSON writes Map.
func (c Counters) MarshalJSON() ([]byte, error) { return json.Marshal(c.Map()) }

// UnmarshalJSON reads Map's form, and the fields of the Counters and
// Result structs state files had before the counters were one table
// (legacyCounters). A name it does not know, a counter dropped since, is
// left out.
func (c *Counters) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("decode optimizer counters: %w", err)
	}
	*c = Counters{}
	byName := map[string]Counter{}
	for _, k := range AllCounters() {
		byName[k.Name()] = k
	}
	return c.decode(fields, byName)
}

func (c *Counters) decode(fields map[string]json.RawMessage, byName map[string]Counter) error {
	for name, raw := range fields {
		if name == "Dedup" {
			var nested map[string]json.RawMessage
			if err := json.Unmarshal(raw, &nested); err != nil {
				return fmt.Errorf("decode optimizer counters %s: %w", name, err)
			}
			if err := c.decode(nested, byName); err != nil {
				return err
			}
			continue
		}
		k, ok := byName[name]
		scale := int64(time.Millisecond)
		if !ok {
			k, ok = legacyCounters[name]
			scale = 1 // IoctlTime was a time.Duration
		}
		if !ok {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return fmt.Errorf("decode optimizer counter %s: %w", name, err)
		}
		if k.timed() {
			n *= scale
		}
		c.v[k] = n
	}
	return nil
}

// UnmarshalJSON reads a Result, or one written before the counters were
// one table, whose counters were fields of its own (see legacyCounters).
func (r *Result) UnmarshalJSON(data []byte) error {
	type plain Result
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("decode job result: %w", err)
	}
	if err := json.Unmarshal(data, (*plain)(r)); err != nil {
		return fmt.Errorf("decode job result: %w", err)
	}
	if _, ok := fields["Counters"]; ok {
		return nil
	}
	return r.Counters.UnmarshalJSON(data)
}

// legacyCounters maps the Go field names the state files had before the
// counters were one table (those inside "Dedup" included) to counters.
var legacyCounters = map[string]Counter{
	"JobsDone": CountJobDone, "JobsFailed": CountJobFailed, "BytesSaved": CountJobBytesSaved,
	"BytesExamined": CountCompressBytesExamined, "BytesCompressed": CountCompressBytesCompressed,
	"SkippedShared": CountCompressBytesSkippedShared,
	"Tries":         CountDedupTries, "Hits": CountDedupHits, "Misses": CountDedupMisses,
	"BytesHashed": CountDedupBytesHashed, "BytesFreed": CountDedupBytesFreed,
	"BytesRewritten": CountDedupBytesRewritten, "BytesKeptWouldGrow": CountDedupBytesKeptWouldGrow,
	"IoctlTime": CountDedupIoctlMs, "ZeroBlocksPunched": CountDedupZeroBlocksPunched,
}
