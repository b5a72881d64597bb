// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"testing"
	"time"
)

// A cheap measurement may be repeated at once; a costly one only after
// usageShare times its duration.
func TestUsageMeasurementBudget(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		took  time.Duration
		since time.Duration // from the last measurement's start to now
		want  time.Duration
	}{
		{"never measured", 0, 0, 0},
		{"cheap, just now", 50 * time.Millisecond, 0, 0},
		{"costly, just now", 2 * time.Second, 2 * time.Second, 38 * time.Second},
		{"costly, long ago", 2 * time.Second, time.Minute, -20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &usageKeeper{measured: now.Add(-tt.since), took: tt.took}
			if got := u.waitLocked(now); got != tt.want {
				t.Errorf("wait %s, want %s", got, tt.want)
			}
		})
	}
}
