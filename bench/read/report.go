// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
)

// targetIdealRatio bounds btrfs-vdo's data on disk over the ideal bound.
const targetIdealRatio = 1.05

// The columns of the table after raw's (0), in newSides's order.
const (
	colZstd = 1
	colVDO  = 2
	colCold = 3
)

// table prints rows of a label, one cell per side, a target and whether
// btrfs-vdo meets it, aligned.
type table struct{ t *tabwriter.Writer }

func (t table) row(cells ...string) {
	cells = append(cells, make([]string, max(0, 6-len(cells)))...)
	fmt.Fprintln(t.t, strings.Join(cells, "\t")+"\t")
}

// perSide is a row's label and its cell for each side.
func (t table) perSide(sides []*side, label string, cell func(s *side) string, target ...string) {
	cells := []string{label}
	for _, s := range sides {
		cells = append(cells, cell(s))
	}
	t.row(append(cells, target...)...)
}

func report(w io.Writer, cfg benchenv.Config, plan readPlan, sides []*side, ideal corpus.Ideal) {
	header(w, cfg, plan, sides, ideal)
	t := table{tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	heads := []string{""}
	for _, s := range sides {
		heads = append(heads, s.name)
	}
	t.row(append(heads, "target", "met")...)
	readRows(t, plan, sides)
	layoutRows(t, plan, sides)
	spaceRows(t, sides, ideal)
	t.t.Flush()
	notes(w, sides)
}

func header(w io.Writer, cfg benchenv.Config, plan readPlan, sides []*side, ideal corpus.Ideal) {
	c := sides[0].c
	var total int64
	for _, v := range c.Volumes {
		total += v.Size
	}
	roots := "a generated /usr"
	if cfg.HostFiles {
		roots = "this machine's /usr"
	}
	fmt.Fprintf(w, "corpus: scale %g, seed %d, template roots from %s: %d volumes, %s of images, each with a precache and a revision\n",
		cfg.Scale, cfg.Seed, roots, len(c.Volumes), benchenv.MiB(total))
	fmt.Fprintf(w, "ideal bound: %d distinct non-zero 4 KiB blocks of %d = %s; %s with each block zstd-3 compressed alone\n",
		ideal.UniqueBlocks, ideal.Blocks, benchenv.MiB(ideal.UniqueBytes()), benchenv.MiB(ideal.Compressed))
	fmt.Fprintf(w, "btrfs-vdo optimize --full: %s wall; the last column: then optimize --cold, %s wall (for information: targets are judged after --full)\n",
		benchenv.Secs(sides[colVDO].pass.Wall), benchenv.Secs(sides[colCold].coldPass.Wall))
	fmt.Fprintf(w, "reads: buffered, through the page cache of the image file, as the loop device Qubes attaches an image with;\n")
	fmt.Fprintf(w, "one request at a time; page cache dropped before each; %d MiB requests sequentially, %d seeded random 4 KiB\n",
		seqChunk>>20, len(plan.offsets[0]))
	fmt.Fprintf(w, "reads of data blocks; from disk: sectors read by each filesystem's loop device (direct I/O).\n\n")
}

func readRows(t table, plan readPlan, sides []*side) {
	t.row(fmt.Sprintf("sequential read, MiB/s (median of %d runs, lowest–highest)", runs))
	for i, img := range plan.roots {
		t.perSide(sides, "  "+img.vid, func(s *side) string { return medianAndSpread(s.seq[i], reading.mibPerSec) },
			">= compress=zstd", benchenv.Met(median(sides[colVDO].seq[i], reading.mibPerSec) >= median(sides[colZstd].seq[i], reading.mibPerSec)))
	}
	t.perSide(sides, "  range over the roots", func(s *side) string {
		lo, hi := spread(slices.Concat(s.seq...), reading.mibPerSec)
		return fmt.Sprintf("%.0f–%.0f", lo, hi)
	})
	t.row("sequential read, MiB from disk (median)")
	for i, img := range plan.roots {
		t.perSide(sides, "  "+img.vid, func(s *side) string { return fmt.Sprintf("%.1f", median(s.seq[i], reading.diskMiB)) })
	}
	for i, img := range plan.random {
		t.row(fmt.Sprintf("random 4 KiB reads, %s", img.vid))
		t.perSide(sides, fmt.Sprintf("  IOPS (median of %d runs, lowest–highest)", runs), func(s *side) string { return medianAndSpread(s.random[i], reading.iops) },
			">= compress=zstd", benchenv.Met(median(sides[colVDO].random[i], reading.iops) >= median(sides[colZstd].random[i], reading.iops)))
		t.perSide(sides, "  read from disk (median)", func(s *side) string { return fmt.Sprintf("%.1f MiB", median(s.random[i], reading.diskMiB)) })
	}
}

func layoutRows(t table, plan readPlan, sides []*side) {
	t.row("extents: data items / average size")
	for i, img := range plan.images {
		t.perSide(sides, "  "+img.vid, func(s *side) string {
			l := s.layouts[i]
			return fmt.Sprintf("%d / %.0f KiB", l.items, l.avgItem()/1024)
		})
	}
	for i, img := range plan.images {
		t.row("layout, " + img.vid)
		t.perSide(sides, "  distinct data extents", func(s *side) string { return fmt.Sprint(s.layouts[i].extents) })
		t.perSide(sides, "  in compressed extents", func(s *side) string { return share(s.layouts[i].compressed, s.layouts[i].bytes) })
		t.perSide(sides, savingLabel(), func(s *side) string {
			l := s.layouts[i]
			cells := make([]string, len(l.bySaving))
			for b, n := range l.bySaving {
				cells[b] = fmt.Sprintf("%.0f", 100*float64(n)/float64(max(1, l.bytes)))
			}
			return strings.Join(cells, " / ") + " %"
		})
		t.perSide(sides, "  of the compressed extents it references, used", func(s *side) string {
			return share(s.layouts[i].compressed, s.layouts[i].extentBytes)
		})
		t.perSide(sides, "  whole image read takes from disk (estimate)", func(s *side) string { return benchenv.MiB(s.layouts[i].seqDisk) })
		t.perSide(sides, "  disk read per 4 KiB block read", func(s *side) string { return fmt.Sprintf("%.1f KiB", s.layouts[i].perRead()/1024) })
		t.perSide(sides, "  items not following the last on disk", func(s *side) string {
			l := s.layouts[i]
			return fmt.Sprintf("%s (%d back)", share(int64(l.jumps), int64(max(1, l.items-1))), l.backward)
		})
	}
}

func spaceRows(t table, sides []*side, ideal corpus.Ideal) {
	t.row("space")
	t.perSide(sides, "  pool data on disk (compsize)", func(s *side) string { return benchenv.MiB(s.usage.Disk) })
	t.perSide(sides, "  filesystem used (statvfs)", func(s *side) string { return benchenv.MiB(s.usage.Used) })
	t.perSide(sides, "  data on disk / ideal bound", func(s *side) string { return benchenv.Ratio(s.usage.Disk, ideal.Compressed) },
		fmt.Sprintf("<= %.2f", targetIdealRatio), benchenv.Met(float64(sides[colVDO].usage.Disk) <= targetIdealRatio*float64(ideal.Compressed)))
}

func notes(w io.Writer, sides []*side) {
	fmt.Fprintln(w)
	if n := sides[colVDO].pass.Note; n != "" {
		fmt.Fprintf(w, "btrfs-vdo optimize --full: %s\n", n)
	}
	fmt.Fprintln(w, "Sequential MiB/s: the image's size (holes included) over the read's wall time. Disk read per 4 KiB")
	fmt.Fprintln(w, "block read: averaged over the image's data blocks, 4 KiB for a block stored raw, the whole compressed")
	fmt.Fprintln(w, "extent for one stored compressed; readahead aside. Data on disk: compsize over the pool, each extent once.")
	fmt.Fprintln(w, "Figures of one benchmark on one machine; other load on it shows in every column.")
}

// savingLabel names the shares of the bySaving row.
func savingLabel() string {
	bounds := make([]string, len(savingBounds))
	for i, b := range savingBounds {
		bounds[i] = fmt.Sprintf("<%g", 100*b)
	}
	return "    by their saving: " + strings.Join(bounds, " / ") + " / more %"
}

// median is the median of f over runs.
func median(runs []reading, f func(reading) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// spread is the lowest and highest of f over runs.
func spread(runs []reading, f func(reading) float64) (lo, hi float64) {
	for i, r := range runs {
		v := f(r)
		if i == 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	return lo, hi
}

func medianAndSpread(runs []reading, f func(reading) float64) string {
	lo, hi := spread(runs, f)
	return fmt.Sprintf("%.0f (%.0f–%.0f)", median(runs, f), lo, hi)
}

func share(part, whole int64) string {
	if whole <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(part)/float64(whole))
}
