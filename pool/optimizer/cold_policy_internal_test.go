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

// A pass's own range is skipped from when it opens; a crash leaves it
// open, and the next pass closes it where it begins.
func TestColdWrittenRanges(t *testing.T) {
	r := openColdRange(nil, 50)
	if !coldWrittenBy(r, 50) || !coldWrittenBy(r, 1000) || coldWrittenBy(r, 49) {
		t.Fatalf("open range %v: want 50 and up skipped, not 49", r)
	}
	r = openColdRange(r, 80) // the pass at 50 crashed
	if !coldWrittenBy(r, 79) || !coldWrittenBy(r, 80) || len(r) != 2 || r[0].To != 79 {
		t.Fatalf("ranges %v: want [50,79] closed and 80 open", r)
	}
	r = closeColdRange(r, 90)
	if coldWrittenBy(r, 91) || !coldWrittenBy(r, 90) {
		t.Fatalf("ranges %v: want 90 skipped, not 91", r)
	}
	for range maxColdWritten + 5 {
		r = openColdRange(r, r[len(r)-1].To+10)
		r = closeColdRange(r, r[len(r)-1].From+1)
	}
	if len(r) != maxColdWritten {
		t.Fatalf("%d ranges kept, want %d", len(r), maxColdWritten)
	}
}
