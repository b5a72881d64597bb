// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
)

// Config holds the flags every corpus benchmark takes.
type Config struct {
	Scale     float64
	Seed      uint64
	Update    float64
	HostFiles bool
	Keep      bool
	Bin       string
}

// Main parses the common flags and runs bench, printing its table to
// stdout. The first ^C or SIGTERM cancels the run, which then cleans up;
// an error ends the program with status 1.
func Main(name string, bench func(ctx context.Context, cfg Config, w io.Writer) error) {
	var cfg Config
	flag.Float64Var(&cfg.Scale, "scale", 1, "corpus size; 1 is about 2.2 GiB of images (1.5 GiB of data)")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "corpus seed")
	flag.Float64Var(&cfg.Update, "update", corpus.DefaultUpdate, "share of a template root's image the update round writes as new file data")
	flag.BoolVar(&cfg.HostFiles, "host-files", false, "make template roots of this machine's /usr files instead of a tree generated from the seed (figures then differ between machines)")
	flag.BoolVar(&cfg.Keep, "keep", false, "leave the filesystems mounted for inspection (undo with tests/cleanup)")
	flag.StringVar(&cfg.Bin, "bin", "./bin", "directory holding btrfs-vdod and btrfs-vdo")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := bench(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
