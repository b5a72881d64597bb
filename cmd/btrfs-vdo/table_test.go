// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"strings"
	"testing"
)

// Sizes read as compsize prints them: whole units from 10 up, one
// decimal below, binary multiples.
func TestSizes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0B"},
		{1023, "1023B"},
		{1024, "1.0K"},
		{1536, "1.5K"},
		{10239, "9.9K"},
		{10240, "10K"},
		{512 << 10, "512K"},
		{1288490189, "1.1G"},
		{1<<30 + 200<<20, "1.1G"},
		{5 << 30, "5.0G"},
		{100 << 30, "100G"},
	}
	for _, tt := range tests {
		if got := (sizes{}).of(tt.n); got != tt.want {
			t.Errorf("of(%d) = %q, want %q", tt.n, got, tt.want)
		}
		if got := (sizes{raw: true}).of(tt.n); got != strings.TrimSpace(got) || got == "" {
			t.Errorf("raw of(%d) = %q", tt.n, got)
		}
	}
	if got := (sizes{}).signed(-1536); got != "-1.5K" {
		t.Errorf("signed(-1536) = %q", got)
	}
}

func TestTableAligns(t *testing.T) {
	tb := newTable("lr", "NAME", "SIZE")
	tb.add("a", "1.0K")
	tb.add("longer", "100G")
	var b strings.Builder
	if err := tb.write(&b); err != nil {
		t.Fatal(err)
	}
	want := "NAME    SIZE\na       1.0K\nlonger  100G\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}
