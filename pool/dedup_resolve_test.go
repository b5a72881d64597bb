package pool

import (
	"slices"
	"testing"
)

func TestPoolMapResolve(t *testing.T) {
	const k = 4096
	// An uncompressed extent of 64 KiB at 1 MiB, referenced from two
	// files, the second only in part; a compressed extent of 128 KiB data
	// stored in 8 KiB just before it, whose block addresses alias it.
	plain := &mappedExtent{bytenr: 1 << 20, ram: 16 * k, gen: 7, refs: []refLoc{
		{name: "/p/a.img", offset: 100 * k, extentOffset: 0, length: 16 * k},
		{name: "/p/b.img", offset: 0, extentOffset: 8 * k, length: 8 * k},
	}}
	packed := &mappedExtent{bytenr: 1<<20 - 2*k, ram: 32 * k, gen: 9, compressed: true, refs: []refLoc{
		{name: "/p/c.img", offset: 40 * k, extentOffset: 0, length: 32 * k},
	}}
	m := &poolMap{plain: []*mappedExtent{plain}, packed: []*mappedExtent{packed}}
	for _, tc := range []struct {
		name string
		addr uint64
		want []blockSource
	}{
		{"first block of the plain extent, and the aliasing compressed block", 1 << 20, []blockSource{
			{path: "/p/a.img", offset: 100 * k, bytenr: 1 << 20, gen: 7},
			{path: "/p/c.img", offset: 42 * k, bytenr: 1<<20 - 2*k, gen: 9},
		}},
		{"first reference that maps the block wins", 1<<20 + 9*k, []blockSource{
			{path: "/p/a.img", offset: 109 * k, bytenr: 1 << 20, gen: 7},
			{path: "/p/c.img", offset: 51 * k, bytenr: 1<<20 - 2*k, gen: 9},
		}},
		{"compressed extent only", 1<<20 - k, []blockSource{
			{path: "/p/c.img", offset: 41 * k, bytenr: 1<<20 - 2*k, gen: 9},
		}},
		{"past both", 1<<20 + 40*k, nil},
		{"before both", 4 * k, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.resolve(tc.addr); !slices.Equal(got, tc.want) {
				t.Errorf("resolve(%d) = %+v, want %+v", tc.addr, got, tc.want)
			}
		})
	}
}
