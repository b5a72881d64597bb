// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"testing"
	"time"
)

// Data is cold once its volume has committed AfterCommits times since,
// or AfterAge has passed since a commit that held it, whichever comes
// first; and only what turned cold since the last pass makes one due.
func TestColdThreshold(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	rests := func(ages ...time.Duration) coldMarks {
		var m coldMarks
		for i, age := range ages {
			m.Rests = append(m.Rests, genTime{Gen: uint64(100 * (i + 1)), Time: now.Add(-age)})
		}
		return m
	}
	tests := []struct {
		name     string
		marks    coldMarks
		commits  int
		age      time.Duration
		want     uint64
		wantDue  bool
		through  uint64
		wantDue2 bool // with Through set to through
	}{
		{"no commit yet", coldMarks{}, 0, 0, 0, false, 0, false},
		{"every commit cold at once", rests(3*day, day, time.Hour), 0, 7 * day, 300, true, 300, false},
		{"three commits: not yet", rests(3*day, day, time.Hour), 3, 7 * day, 0, false, 0, false},
		{"three commits: the first is", rests(4*day, 3*day, day, time.Hour), 3, 7 * day, 100, true, 100, false},
		{"age alone", rests(8*day, 6*day, time.Hour), 3, 7 * day, 100, true, 100, false},
		{"age and commits: the newer wins", rests(9*day, 8*day, 6*day, day, time.Hour), 2, 7 * day, 300, true, 200, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol := ColdPolicy{Enabled: true, AfterCommits: tc.commits, AfterAge: tc.age}
			if got := tc.marks.threshold(pol, now); got != tc.want {
				t.Errorf("threshold = %d, want %d", got, tc.want)
			}
			if got := tc.marks.due(pol, now); got != tc.wantDue {
				t.Errorf("due = %v, want %v", got, tc.wantDue)
			}
			m := tc.marks
			m.Through = tc.through
			if got := m.due(pol, now); got != tc.wantDue2 {
				t.Errorf("due after a pass through %d = %v, want %v", tc.through, got, tc.wantDue2)
			}
		})
	}
}

// The generations of a pass that reached its settle are skipped, and the
// newest maxColdWritten passes are kept.
func TestColdWrittenRanges(t *testing.T) {
	r := addColdRange(nil, 50, 60)
	for _, tc := range []struct {
		gen  uint64
		want bool
	}{{49, false}, {50, true}, {60, true}, {61, false}} {
		if got := coldWrittenBy(r, tc.gen); got != tc.want {
			t.Errorf("generation %d written by a pass: %v, want %v", tc.gen, got, tc.want)
		}
	}
	for i := range maxColdWritten + 5 {
		from := 100 + uint64(i)*10
		r = addColdRange(r, from, from+1)
	}
	if len(r) != maxColdWritten || coldWrittenBy(r, 50) || !coldWrittenBy(r, r[len(r)-1].To) {
		t.Fatalf("%d ranges kept (want %d), the oldest dropped and the newest kept: %v", len(r), maxColdWritten, r)
	}
}
