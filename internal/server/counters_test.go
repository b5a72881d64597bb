// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// The jobs op's golden answer shows the counters by the optimizer's
// names, every one of them and no other: the wire's counters are the
// table's, so the golden file has to follow it.
func TestGoldenCountersAreTheTable(t *testing.T) {
	data, err := os.ReadFile("../../api/testdata/ops/jobs.response.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Result struct{ Counters map[string]int64 }
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, k := range optimizer.AllCounters() {
		want = append(want, k.Name())
	}
	got := slices.Sorted(maps.Keys(golden.Result.Counters))
	if slices.Sort(want); !slices.Equal(got, want) {
		t.Errorf("golden counters %v, want %v", got, want)
	}
}
