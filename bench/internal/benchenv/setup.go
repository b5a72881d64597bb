package benchenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
)

// CheckTools fails early, naming what is missing: root, the tools every
// benchmark needs, extra ones (each with its Debian package), and the
// btrfs-vdo binaries in bin.
func CheckTools(bin string, extra ...[2]string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (loop mounts, btrfs ioctls)")
	}
	tools := append([][2]string{
		{"mkfs.btrfs", "btrfs-progs"}, {"btrfs", "btrfs-progs"}, {"mkfs.ext4", "e2fsprogs"},
		{"mount", "mount"}, {"umount", "mount"}, {"compsize", "btrfs-compsize"},
	}, extra...)
	for _, t := range tools {
		if _, err := exec.LookPath(t[0]); err != nil {
			return fmt.Errorf("needs %s (package %s): %w", t[0], t[1], err)
		}
	}
	for _, b := range []string{"btrfs-vdod", "btrfs-vdo"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("needs %s from make build (-bin): %w", b, err)
		}
	}
	return nil
}

// BuildCorpus makes a corpus in mnt/pool, staging in mnt/scratch.
func BuildCorpus(ctx context.Context, mnt string, opts corpus.Options) (*corpus.Corpus, error) {
	opts.Scratch = filepath.Join(mnt, "scratch")
	if err := os.Mkdir(opts.Scratch, 0o755); err != nil {
		return nil, fmt.Errorf("create scratch directory: %w", err)
	}
	return corpus.Build(ctx, filepath.Join(mnt, "pool"), opts)
}
