// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import "testing"

// SetSegmentBytes makes the dedup stage cut its passes into segments of n
// bytes of new data until the test ends.
func SetSegmentBytes(t testing.TB, n uint64) {
	old := segmentBytes
	segmentBytes = n
	t.Cleanup(func() { segmentBytes = old })
}

// StateWrites counts the writes of p's state file since it opened.
func StateWrites(p *Pool) uint64 { return p.state.lazy.writes.Load() }
