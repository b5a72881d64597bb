// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
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

// TwoCorpora builds the same corpus (opts) on two loop btrfs filesystems
// named by names, so that each side of a benchmark measures its own copy.
// Each filesystem holds room times the corpus' size, plus 2 GiB.
func TwoCorpora(ctx context.Context, e *Env, opts corpus.Options, names [2]string, room int64) ([2]*corpus.Corpus, [2]string, error) {
	var cs [2]*corpus.Corpus
	var mnts [2]string
	var total int64
	for _, v := range corpus.Plan(opts) {
		total += v.Size
	}
	for i, name := range names {
		var err error
		if mnts[i], err = e.MountBtrfs(ctx, name, room*total+2<<30); err != nil {
			return cs, mnts, err
		}
		Logf("building the corpus (scale %g, seed %d) on %s", opts.Scale, opts.Seed, mnts[i])
		if cs[i], err = BuildCorpus(ctx, mnts[i], opts); err != nil {
			return cs, mnts, err
		}
	}
	return cs, mnts, nil
}

// StartUpdate starts target, a volume of the pool the corpus c is, through
// the daemon and applies the corpus' update round to its dirty image, as
// a VM would write it; the caller commits vol. It returns the dirty and
// clean image paths.
func (d *Daemon) StartUpdate(ctx context.Context, c *corpus.Corpus, pool api.Pool, target corpus.Volume) (vol api.VolumeArgs, upd corpus.Update, dirty, img string, err error) {
	Logf("btrfs-vdo side: update round on %s through the daemon", target.VID)
	vol = api.VolumeArgs{Pool: pool, Volume: api.Volume{
		VID: target.VID, RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: target.Size,
	}}
	if err := d.Call(ctx, api.OpVolumeStart, vol, nil); err != nil {
		return vol, upd, "", "", err
	}
	p, err := volume.PathsFor(vol.Volume.VID)
	if err != nil {
		return vol, upd, "", "", err
	}
	dirty, img = c.Path(p.Dirty), c.Path(p.Clean)
	upd, err = c.ApplyUpdate(ctx, dirty, vol.Volume.VID, 1)
	return vol, upd, dirty, img, err
}
