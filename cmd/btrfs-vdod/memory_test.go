// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name       string
		indexBytes uint64
		want       int64
	}{
		{"no index open", 0, 48 * mib},
		{"one small pool", 32 * mib, 80 * mib},
		{"a 1 TB pool and a small one", 128*mib + 32*mib, 208 * mib},
		{"largest that fits", math.MaxInt64 - 48*mib, math.MaxInt64},
		{"beyond int64", math.MaxUint64, math.MaxInt64},
	} {
		if got := memoryLimit(tc.indexBytes); got != tc.want {
			t.Errorf("%s: memoryLimit(%d) = %d, want %d", tc.name, tc.indexBytes, got, tc.want)
		}
	}
}

// TestMemoryLimiter: the limit follows the indexes and is logged once per
// change.
func TestMemoryLimiter(t *testing.T) {
	var logs bytes.Buffer
	var set []int64
	report := memoryLimiter(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), func(n int64) int64 {
		set = append(set, n)
		return 0
	})
	for _, total := range []uint64{32 << 20, 32 << 20, 64 << 20} {
		report(total)
	}
	if want := []int64{80 << 20, 112 << 20}; !slices.Equal(set, want) {
		t.Errorf("limits set %v, want %v", set, want)
	}
	if n := strings.Count(logs.String(), "level=DEBUG msg=\"memory limit\""); n != 2 {
		t.Errorf("logged %d times, want 2:\n%s", n, logs.String())
	}
}
