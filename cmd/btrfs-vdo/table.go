// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// table prints rows in columns two spaces apart: names left-aligned,
// figures right-aligned.
type table struct {
	header []string
	align  string // per column: 'l' left-aligned, 'r' right-aligned
	rows   [][]string
}

// newTable returns a table with one column per header, aligned as align
// says ("llr": two columns of names, then one of figures).
func newTable(align string, header ...string) *table {
	if len(align) != len(header) {
		panic(fmt.Sprintf("table: %d alignments for %d columns", len(align), len(header)))
	}
	return &table{header: header, align: align}
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	widths := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			switch {
			case t.align[i] == 'l' && i == len(row)-1:
				b.WriteString(cell) // no trailing blanks
			case t.align[i] == 'l':
				b.WriteString(cell + pad)
			default:
				b.WriteString(pad + cell)
			}
			if i < len(row)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sizes renders byte counts as compsize does ("512K", "1.2G": one
// decimal below 10 units), or in plain bytes.
type sizes struct{ raw bool }

func (s sizes) of(n uint64) string {
	if s.raw {
		return fmt.Sprint(n)
	}
	const units = "BKMGTPE"
	u := 0
	for n >= 10240 {
		u++
		n >>= 10
	}
	if n >= 1024 {
		return fmt.Sprintf("%d.%d%c", n>>10, n*10/1024%10, units[u+1])
	}
	return fmt.Sprintf("%d%c", n, units[u])
}

// signed renders a count that may be negative (space saved, when a run
// grew what it worked on).
func (s sizes) signed(n int64) string {
	if n < 0 {
		return "-" + s.of(uint64(-n))
	}
	return s.of(uint64(n))
}

// percent renders part/whole, or "-" when whole is 0.
func percent(part, whole uint64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%d%%", part*100/whole)
}
