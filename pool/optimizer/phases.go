// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"log/slog"
	"time"
)

// phases times the stages of a job, for its log line: where the time of
// a slow job went is what an operator asks first.
type phases struct {
	last  time.Time
	names []string
	spent map[string]time.Duration
}

func newPhases() *phases {
	return &phases{last: time.Now(), spent: map[string]time.Duration{}}
}

// done charges the time since the last call to the stage name.
func (p *phases) done(name string) {
	now := time.Now()
	if _, ok := p.spent[name]; !ok {
		p.names = append(p.names, name)
	}
	p.spent[name] += now.Sub(p.last)
	p.last = now
}

// attr is the stages' milliseconds, in the order first met.
func (p *phases) attr() slog.Attr {
	attrs := make([]any, 0, 2*len(p.names))
	for _, n := range p.names {
		attrs = append(attrs, n, p.spent[n].Milliseconds())
	}
	return slog.Group("ms_in", attrs...)
}
