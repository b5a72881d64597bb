// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/schollz/progressbar/v3"

	"github.com/btrfs-vdo/btrfs-vdo/internal/config"
	estimation "github.com/btrfs-vdo/btrfs-vdo/internal/estimate"
)

const estimateUsage = `Usage: btrfs-vdo estimate [--sample SIZE|FRACTION] [--seed N] [--level N] [--json] [--bytes] DIR

Estimate what "btrfs-vdo optimize --full" would save in the pool directory
DIR (a file-reflink or btrfs-vdo pool: DIR/appvms/, DIR/vm-templates/),
without changing anything in it: per VM, the data, its space on disk now,
after compression alone, and after zero blocks, duplicates and compression.
Duplicates are counted from the checksums btrfs keeps of every block (no
data is read for them); compression from a random sample of the data. The
± figures are 95% confidence intervals of the sampling. Runs in this
process, needs root, and reads DIR with O_NOATIME.
`

func estimate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("estimate", estimateUsage)
	sample := fs.String("sample", "1GiB", "data to read: a size (`SIZE`, e.g. 512MiB, at least 1MiB) or a share of the data (0.05, 5%)")
	seed := fs.Uint64("seed", 1, "seed of the random choices: the same seed gives the same estimate")
	level := fs.Int("level", 0, "zstd `level` 1-15 (default: the pool's zstd_level in "+config.DefaultPath+", else 3)")
	var out outputFlags
	out.register(fs)
	if err := parseFlags(fs, args, stdout, argCount{1, 1, "one DIR"}); err != nil {
		return err
	}
	opt := estimation.Options{Seed: *seed, ZstdLevel: *level}
	if err := parseSample(*sample, &opt); err != nil {
		return usageError{err}
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	if opt.ZstdLevel == 0 {
		if opt.ZstdLevel, err = configuredLevel(dir); err != nil {
			return err
		}
	} else if opt.ZstdLevel < 1 || opt.ZstdLevel > 15 {
		return usageError{fmt.Errorf("--level %d is not between 1 and 15", opt.ZstdLevel)}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	endBars := func() {}
	if isTerminal(stderr) {
		endBars = showStages(&opt, stderr)
	}
	r, err := estimation.Run(ctx, dir, opt)
	endBars() // before the table, which may go to the same terminal
	if err != nil {
		return err
	}
	if out.json {
		return writeJSON(stdout, r)
	}
	return printEstimate(stdout, r, out.sizes())
}

// parseSample reads --sample: a fraction, a percentage or a size.
func parseSample(s string, opt *estimation.Options) error {
	bad := fmt.Errorf("--sample %q: want a size of at least 1MiB (512MiB, 2GiB) or a share of the data in (0, 1] (0.05, 5%%)", s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || !(f > 0 && f <= 100) {
			return bad
		}
		opt.SampleFraction = f / 100
		return nil
	}
	if strings.Contains(s, ".") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0 && f <= 1) {
			return bad
		}
		opt.SampleFraction = f
		return nil
	}
	var size config.Size
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		err = size.UnmarshalTOML(n)
	} else if err := size.UnmarshalTOML(s); err != nil {
		return bad
	}
	if size < estimation.MinSampleBytes {
		return bad
	}
	opt.SampleBytes = uint64(size)
	return nil
}

// configuredLevel is the zstd level the daemon would use for the pool at
// dir: from the configuration file when there is one.
func configuredLevel(dir string) (int, error) {
	cfg, err := config.Load(config.DefaultPath)
	if errors.Is(err, fs.ErrNotExist) {
		return estimation.DefaultZstdLevel, nil
	}
	if err != nil {
		return 0, err
	}
	if o, ok := cfg.Pools[dir]; ok && o.ZstdLevel != nil {
		return *o.ZstdLevel, nil
	}
	return cfg.ZstdLevel, nil
}

// showStages draws a progress bar per stage on w; the returned function
// ends the last one.
func showStages(opt *estimation.Options, w io.Writer) func() {
	var bar *progressbar.ProgressBar
	var stage string
	opt.Progress = func(s string, done, total uint64) {
		if s != stage {
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(w)
			}
			stage = s
			bar = progressbar.NewOptions64(int64(total), progressbar.OptionSetWriter(w),
				progressbar.OptionShowBytes(s == estimation.StageSample), progressbar.OptionSetDescription(s),
				progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
		}
		_ = bar.Set64(int64(done))
	}
	return func() {
		if bar != nil {
			_ = bar.Finish()
			fmt.Fprintln(w)
		}
	}
}

func printEstimate(w io.Writer, r estimation.Report, sz sizes) error {
	t := newTable("lrrrrr", "VM", "DATA", "DISK NOW", "COMPRESSED", "DEDUPED", "SAVING")
	for _, f := range append(r.VMs, r.Total) {
		name := f.VM
		if name == "" {
			name = "TOTAL"
		}
		t.add(name, sz.of(f.LogicalBytes), sz.of(f.DiskBytes),
			plusMinus(sz, f.CompressedBytes, f.CompressedErrorBytes), plusMinus(sz, f.DedupedBytes, f.DedupedErrorBytes),
			sz.signed(f.SavingBytes))
	}
	if err := t.write(w); err != nil {
		return err
	}
	total := r.Total
	fmt.Fprintf(w, "\nzero blocks %s, duplicates %s, left as they are %s on disk\n",
		sz.of(total.ZeroBytes), plusMinus(sz, total.DuplicateBytes, total.DuplicateErrorBytes), sz.of(total.UnchangedDiskBytes))
	fmt.Fprintf(w, "read %s (%d of %d units of 128KiB) and the checksums of %d blocks in %.1fs; zstd level %d, seed %d\n",
		sz.of(r.BytesRead), r.UnitsRead, r.UnitsTotal, r.BlocksSwept, r.Seconds, r.ZstdLevel, r.Seed)
	fmt.Fprintln(w, "± is a 95% confidence interval of the sampling; COMPRESSED is compression alone, DEDUPED what optimize --full leaves")
	if r.ChecksumMismatches > 0 {
		fmt.Fprintf(w, "warning: %d sampled blocks changed while being read: is the pool in use?\n", r.ChecksumMismatches)
	}
	return nil
}

func plusMinus(sz sizes, n, err uint64) string {
	return sz.of(n) + "±" + sz.of(err)
}
