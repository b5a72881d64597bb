// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	compression "github.com/btrfs-vdo/btrfs-vdo/internal/compress"
)

const compressUsage = `Usage: btrfs-vdo compress [--level N] [--json] [--bytes] PATH...

Compress files and directory trees on btrfs in place with zstd, without
unsharing anything: extents shared with reflinked copies or snapshots are
left as they are (unlike "btrfs filesystem defragment -czstd"). Files lose
the NOCOMPRESS flag ("chattr -m") and get the zstd compression property, so
their later writes are compressed too. Runs at idle I/O priority, stays on
each PATH's filesystem and follows no symlinks. Prints usage before and
after, as compsize does. Interrupted, it resumes where it stopped when run
again: compressed data is not examined twice.

Files it cannot compress are skipped and listed with the reason: no-COW
(chattr +C, as systemd's journals are), immutable (chattr +i), append-only
(chattr +a), or in use (a swap file). Needs no daemon, but root.
`

// zstd levels btrfs accepts.
const minZstdLevel, maxZstdLevel = 1, 15

// compressReport is compress --json's output.
type compressReport struct {
	Before          usageReport   `json:"before"`
	After           usageReport   `json:"after"`
	BytesExamined   uint64        `json:"bytes_examined"`
	BytesCompressed uint64        `json:"bytes_compressed"`
	SkippedShared   uint64        `json:"skipped_shared"`
	BytesSaved      int64         `json:"bytes_saved"`
	Skipped         []skippedFile `json:"skipped"`
}

// usageReport is a compsize report: the total, then one row per type.
type usageReport struct {
	Total  api.TypeUsage   `json:"total"`
	ByType []api.TypeUsage `json:"by_type"`
	Files  uint64          `json:"files"`
}

type skippedFile struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// compress runs in the CLI itself: dom0's own files belong to no pool and
// need no daemon, only the machinery the optimizer compresses with.
func compress(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("compress", compressUsage)
	level := 0
	fs.Var(intInRange{&level, minZstdLevel, maxZstdLevel}, "level",
		fmt.Sprintf("zstd `level`, %d to %d (kernel 6.15+; the kernel's default when not given)", minZstdLevel, maxZstdLevel))
	var out outputFlags
	out.register(fs)
	if err := parseFlags(fs, args, stdout, argCount{1, -1, "at least one PATH"}); err != nil {
		return err
	}
	paths := fs.Args()
	if err := compression.CheckOnBtrfs(paths); err != nil {
		return err
	}
	report, err := compressPaths(paths, level, stderr)
	if err != nil {
		return err
	}
	if out.json {
		return writeJSON(stdout, report)
	}
	return printCompressed(stdout, report, out.sizes())
}

func compressPaths(paths []string, level int, stderr io.Writer) (compressReport, error) {
	before, err := compression.Measure(paths)
	if err != nil {
		return compressReport{}, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := compression.LowerIOPriority(); err != nil {
		fmt.Fprintln(stderr, "btrfs-vdo: cannot lower I/O priority:", err)
	}
	tty := isTerminal(stderr)
	last := time.Now()
	sz := sizes{}
	res, err := compression.Files(ctx, paths, level, func(path string, examined uint64) {
		if tty && time.Since(last) > 200*time.Millisecond {
			fmt.Fprintf(stderr, "\r\033[Kcompressing: %s examined, %s", sz.of(examined), path)
			last = time.Now()
		}
	})
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return compressReport{}, err
	}
	after, err := compression.Measure(paths)
	if err != nil {
		return compressReport{}, err
	}
	report := compressReport{
		Before: toUsageReport(before), After: toUsageReport(after),
		BytesExamined: res.BytesExamined, BytesCompressed: res.BytesCompressed, SkippedShared: res.SkippedShared,
		BytesSaved: int64(before.Total.DiskBytes) - int64(after.Total.DiskBytes), Skipped: []skippedFile{},
	}
	for _, s := range res.Skipped {
		report.Skipped = append(report.Skipped, skippedFile{Path: s.Path, Reason: s.Reason})
	}
	return report, nil
}

func toUsageReport(r compression.Usage) usageReport {
	row := func(u compression.UsageRow) api.TypeUsage {
		return api.TypeUsage{Type: u.Type, DiskBytes: u.DiskBytes, UncompressedBytes: u.UncompressedBytes, ReferencedBytes: u.ReferencedBytes}
	}
	out := usageReport{Total: row(r.Total), ByType: []api.TypeUsage{}, Files: r.Files}
	out.Total.Type = "TOTAL"
	for _, t := range r.ByType {
		out.ByType = append(out.ByType, row(t))
	}
	return out
}

func printCompressed(w io.Writer, r compressReport, sz sizes) error {
	fmt.Fprintf(w, "examined %s, compressed %s, left shared %s\n",
		sz.of(r.BytesExamined), sz.of(r.BytesCompressed), sz.of(r.SkippedShared))
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "\nskipped %d files it cannot compress:\n", len(r.Skipped))
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "  %s: %s\n", s.Path, s.Reason)
		}
	}
	for _, rep := range []struct {
		title  string
		report usageReport
	}{{"before", r.Before}, {"after", r.After}} {
		fmt.Fprintf(w, "\n%s:\n", rep.title)
		if err := usageTable(rep.report, sz).write(w); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nsaved %s on disk\n", sz.signed(r.BytesSaved))
	return err
}

// usageTable lays a report out as compsize does.
func usageTable(r usageReport, sz sizes) *table {
	t := newTable("lrrrr", "Type", "Perc", "Disk Usage", "Uncompressed", "Referenced")
	for _, row := range append([]api.TypeUsage{r.Total}, r.ByType...) {
		t.add(row.Type, percent(row.DiskBytes, row.UncompressedBytes),
			sz.of(row.DiskBytes), sz.of(row.UncompressedBytes), sz.of(row.ReferencedBytes))
	}
	return t
}
