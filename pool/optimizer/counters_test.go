// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The counters' page documents exactly the counters of the table: a
// counter added without its row, or a row left for a counter removed,
// fails here.
func TestCountersDocumented(t *testing.T) {
	data, err := os.ReadFile("../../docs/counters.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	name := regexp.MustCompile("`([a-z0-9_]+)`")
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = true
		}
	}
	inTable := map[string]bool{}
	for _, k := range AllCounters() {
		inTable[k.Name()] = true
	}
	for n := range inTable {
		if !documented[n] {
			t.Errorf("counter %s has no row in docs/counters.md", n)
		}
	}
	for n := range documented {
		if !inTable[n] {
			t.Errorf("docs/counters.md documents %s, which is not in counterTable", n)
		}
	}
}

// Every counter has a unique name, prefixed by its stage, and a doc.
func TestCounterTable(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range AllCounters() {
		stage, _, _ := strings.Cut(k.Name(), "_")
		if !slices.Contains([]string{"job", "compress", "dedup", "cold"}, stage) || k.Doc() == "" || seen[k.Name()] {
			t.Errorf("counter %d: name %q, doc %q: want a unique name prefixed by a stage, and a doc", k, k.Name(), k.Doc())
		}
		seen[k.Name()] = true
	}
}

func TestCountersJSON(t *testing.T) {
	var c Counters
	c.add(CountDedupHits, 3)
	c.v[CountJobBytesSaved] = -4096
	c.addTime(CountDedupIoctlMs, 2500*time.Microsecond)
	for _, tt := range []struct {
		name string
		json string
		want map[string]int64
	}{
		{"as written", mustJSON(t, c), map[string]int64{"dedup_hits": 3, "job_bytes_saved": -4096, "dedup_ioctl_ms": 2}},
		{"a counter dropped since", `{"dedup_hits": 1, "compress_gone": 5}`, map[string]int64{"dedup_hits": 1}},
		{
			"Counters before the table",
			`{"JobsDone": 2, "JobsFailed": 1, "BytesSaved": -8192, "SkippedShared": 7,
			  "Dedup": {"Hits": 5, "IoctlTime": 3000000, "ZeroBlocksPunched": 9}}`,
			map[string]int64{"job_done": 2, "job_failed": 1, "job_bytes_saved": -8192, "compress_bytes_skipped_shared": 7,
				"dedup_hits": 5, "dedup_ioctl_ms": 3, "dedup_zero_blocks_punched": 9},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got Counters
			if err := json.Unmarshal([]byte(tt.json), &got); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(nonZero(got), tt.want) {
				t.Errorf("decoded %v, want %v", got, tt.want)
			}
		})
	}
}

// A job's result written before the counters were one table keeps its
// figures.
func TestResultJSON(t *testing.T) {
	var r Result
	r.Counters.add(CountCompressBytesCompressed, 1<<20)
	r.DiskBefore, r.DiskAfter = 3, 1
	for _, tt := range []struct{ name, json string }{
		{"as written", mustJSON(t, r)},
		{"before the table", `{"BytesCompressed": 1048576, "DiskBefore": 3, "DiskAfter": 1, "Dedup": {"Hits": 0}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got Result
			if err := json.Unmarshal([]byte(tt.json), &got); err != nil || got != r {
				t.Errorf("decoded %+v (%v), want %+v", got, err, r)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func nonZero(c Counters) map[string]int64 {
	m := c.Map()
	maps.DeleteFunc(m, func(_ string, v int64) bool { return v == 0 })
	return m
}

// A job's outcome reports what its stages examined, compressed and left
// shared, a cold pass's under counters of its own.
func TestOutcomeFiguresOverStages(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		examined, compressed, skipped Counter
	}{
		{"commit's job", CountCompressBytesExamined, CountCompressBytesCompressed, CountCompressBytesSkippedShared},
		{"cold pass", CountColdBytesExamined, CountColdBytesRecompressed, CountColdBytesSkippedShared},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Counters
			c.add(tc.examined, 3<<20)
			c.add(tc.compressed, 2<<20)
			c.add(tc.skipped, 1<<20)
			if c.Examined() != 3<<20 || c.Compressed() != 2<<20 || c.SkippedShared() != 1<<20 {
				t.Fatalf("examined %d, compressed %d, skipped %d; want 3, 2 and 1 MiB", c.Examined(), c.Compressed(), c.SkippedShared())
			}
		})
	}
}
