package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"runtime"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/ioprio"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

// compress runs in the CLI itself: dom0's own files belong to no pool and
// need no daemon, only the optimiser's machinery.
func compress(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("compress", `Usage: btrfs-vdo compress [--level N] [--json] PATH...

Compress files and directory trees on btrfs in place with zstd, without
unsharing anything: extents shared with reflinked copies or snapshots are
left as they are (unlike "btrfs filesystem defragment -czstd"). Files lose
the NOCOMPRESS flag ("chattr -m") and get the zstd compression property, so
their later writes are compressed too. Runs at idle I/O priority, stays on
each PATH's filesystem and follows no symlinks. Prints usage before and
after, as compsize does. Interrupted, it resumes where it stopped when run
again: compressed data is not examined twice.

`, stderr)
	level := fs.Int("level", 0, "zstd `level` (kernel 6.15+; 0: the kernel's default)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError{fmt.Errorf("compress takes at least one PATH")}
	}
	paths := fs.Args()
	before, err := usage.Measure(paths)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runtime.LockOSThread()
	if err := ioprio.SetIdle(); err != nil {
		fmt.Fprintln(stderr, "btrfs-vdo: cannot lower I/O priority:", err)
	}
	tty := isTerminal(stderr)
	last := time.Now()
	res, err := pool.CompressFiles(ctx, paths, *level, func(path string, examined uint64) {
		if tty && time.Since(last) > 200*time.Millisecond {
			fmt.Fprintf(stderr, "\r\033[Kcompressing: %s examined, %s", humanBytes(int64(examined)), path)
			last = time.Now()
		}
	})
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	after, err := usage.Measure(paths)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, map[string]any{"before": before, "after": after, "result": res})
	}
	fmt.Fprintf(stdout, "examined %s, compressed %s, left shared %s\n\n",
		humanBytes(int64(res.BytesExamined)), humanBytes(int64(res.BytesCompressed)), humanBytes(int64(res.SkippedShared)))
	for _, r := range []struct {
		title  string
		report usage.Report
	}{{"before", before}, {"after", after}} {
		fmt.Fprintln(stdout, r.title+":")
		printReport(stdout, r.report)
	}
	fmt.Fprintf(stdout, "saved %s on disk\n", humanBytes(int64(before.Total.DiskBytes)-int64(after.Total.DiskBytes)))
	return nil
}

// printReport prints a usage report in compsize's layout.
func printReport(w io.Writer, r usage.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Type\tPerc\tDisk Usage\tUncompressed\tReferenced\t")
	for _, row := range append([]usage.Row{r.Total}, r.ByType...) {
		perc := "-"
		if row.UncompressedBytes > 0 {
			perc = fmt.Sprintf("%d%%", 100*row.DiskBytes/row.UncompressedBytes)
		}
		name := row.Type
		if name == "" {
			name = "TOTAL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", name, perc, humanBytes(int64(row.DiskBytes)),
			humanBytes(int64(row.UncompressedBytes)), humanBytes(int64(row.ReferencedBytes)))
	}
	tw.Flush()
}
