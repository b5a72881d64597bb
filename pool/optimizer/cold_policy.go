// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"slices"
	"time"
)

// ColdPolicy says when data is cold and how strongly it is then
// recompressed. Data is cold once its volume has committed AfterCommits
// times since it was written, or once AfterAge has passed since a commit
// that already held it: a template root updated monthly, say, or an
// AppVM's old files.
type ColdPolicy struct {
	Enabled      bool
	Level        int // zstd level of cold data
	AfterCommits int
	AfterAge     time.Duration
}

// maxRests bounds the rests a volume's state keeps: enough for any
// AfterCommits the configuration accepts.
const maxRests = 64

// genTime is a filesystem generation and when it was reached.
type genTime struct {
	Gen  uint64    `json:"gen"`
	Time time.Time `json:"time"`
}

// coldMarks is what a pool's state keeps of a volume for the cold pass.
type coldMarks struct {
	// Rests are the generations at which the volume's jobs ended, oldest
	// first: everything the volume's files held then was written at or
	// before them.
	Rests []genTime `json:"rests,omitempty"`
	// Through: the extents written at or before it have been through the
	// cold pass.
	Through uint64 `json:"through,omitempty"`
	// Asked: an administrator asked for the extents written before it
	// (optimize --cold), whatever their age.
	Asked uint64 `json:"asked,omitempty"`
}

// genRange is an inclusive range of generations.
type genRange struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// maxColdWritten bounds the cold passes' own ranges the state keeps; an
// extent of an older pass is only judged again, and kept, since it does
// not get smaller.
const maxColdWritten = 32

// rested records that a job of the volume ended at gen.
func (m coldMarks) rested(gen uint64, now time.Time) coldMarks {
	m.Rests = append(slices.Clone(m.Rests), genTime{Gen: gen, Time: now})
	if n := len(m.Rests); n > maxRests {
		m.Rests = m.Rests[n-maxRests:]
	}
	return m
}

// threshold is the newest generation whose extents are cold at now: 0
// when none is.
func (m coldMarks) threshold(pol ColdPolicy, now time.Time) uint64 {
	t := m.Asked
	if n := len(m.Rests); pol.AfterCommits < n {
		t = m.Rests[n-1-pol.AfterCommits].Gen
	}
	for _, r := range m.Rests {
		if now.Sub(r.Time) >= pol.AfterAge {
			t = max(t, r.Gen)
		}
	}
	return t
}

// due reports whether the volume has extents that turned cold since its
// last cold pass.
func (m coldMarks) due(pol ColdPolicy, now time.Time) bool {
	return m.threshold(pol, now) > m.Through
}

// coldWrittenBy reports whether gen is one at which a cold pass wrote:
// its extents are already recompressed.
func coldWrittenBy(ranges []genRange, gen uint64) bool {
	for _, r := range ranges {
		if gen >= r.From && gen <= r.To {
			return true
		}
	}
	return false
}

// addColdRange records a pass's generations [from, to], keeping the
// newest maxColdWritten ranges. Only a pass that reached its settle
// records one: what a crash cut short is judged again, and kept, since
// its copies do not get smaller.
func addColdRange(ranges []genRange, from, to uint64) []genRange {
	ranges = append(slices.Clone(ranges), genRange{From: from, To: to})
	if n := len(ranges); n > maxColdWritten {
		ranges = ranges[n-maxColdWritten:]
	}
	return ranges
}
