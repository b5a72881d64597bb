// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"errors"
	"strings"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// kinds names the volumes an update round changes, in the order of
// updated and of a path's figures.
var kinds = [2]string{"template root", "AppVM private"}

// updated returns the volumes the update round changes: the comparison's
// target, a template root, and the corpus's first AppVM private.
func updated(c *corpus.Corpus, target corpus.Volume) [2]corpus.Volume {
	return [2]corpus.Volume{target, c.AppPrivates()[0]}
}

// volumeUpdate is one volume's part of an update round on the btrfs-vdo
// side and the pass that took it in.
type volumeUpdate struct {
	Vol     corpus.Volume
	Upd     corpus.Update
	Changed int64 // bytes of the committed image not shared with its revision
	Pass    pass
}

// updatePath is the update round on one path, a volume of each kind.
type updatePath [2]volumeUpdate

// changed is the bytes the path changed in all its volumes.
func (u updatePath) changed() int64 { return u[0].Changed + u[1].Changed }

// pass is the path's passes taken together, with the given space figures.
func (u updatePath) pass(before, after benchenv.Usage) pass {
	a, b := u[0].Pass, u[1].Pass
	return pass{
		Phase: benchenv.Phase{
			Note:       u.note(),
			Ran:        a.Ran && b.Ran,
			Wall:       a.Wall + b.Wall,
			CPU:        a.CPU + b.CPU,
			MachineCPU: a.MachineCPU + b.MachineCPU,
			Commit:     a.Commit + b.Commit,
		},
		Read:       a.Read + b.Read,
		PeakRSS:    max(a.PeakRSS, b.PeakRSS),
		Before:     before,
		After:      after,
		DedupFreed: a.DedupFreed + b.DedupFreed,
		Hashed:     a.Hashed + b.Hashed,
		Saved:      a.Saved + b.Saved,
		Examined:   a.Examined + b.Examined,
	}
}

// note is the passes' notes, each named by its kind of volume.
func (u updatePath) note() string {
	var notes []string
	for i, v := range u {
		if v.Pass.Note != "" {
			notes = append(notes, kinds[i]+": "+v.Pass.Note)
		}
	}
	return strings.Join(notes, "; ")
}

// daemonUpdate runs the update round through the daemon: it starts the
// updated volumes, writes into their dirty images, and commits them one
// after the other, each commit and the job it queues a pass of its own
// with cold caches. r.Update is both passes together.
func daemonUpdate(ctx context.Context, mnt string, c *corpus.Corpus, pool api.Pool, target corpus.Volume, d *benchenv.Daemon, r *result) error {
	var args [2]api.VolumeArgs
	var dirty, img [2]string
	running := make(map[string]string)
	for i, v := range updated(c, target) {
		var err error
		if args[i], r.Daemon[i].Upd, dirty[i], img[i], err = d.StartUpdate(ctx, c, pool, v); err != nil {
			return err
		}
		r.Daemon[i].Vol = v
		running[img[i]] = dirty[i]
	}
	// Point syncs the filesystem, so the dirty images' extents are final.
	before, err := benchenv.Point(ctx, mnt, c, running)
	if err != nil {
		return err
	}
	for i := range r.Daemon {
		if _, r.Daemon[i].Changed, err = benchenv.NewData(dirty[i], img[i]); err != nil {
			return err
		}
	}
	for i := range r.Daemon {
		benchenv.Logf("btrfs-vdo side: commit %s and its job", args[i].Volume.VID)
		commit := func() (benchenv.Phase, error) { return d.CommitAndWait(ctx, args[i]) }
		if err := daemonPass(ctx, mnt, c.Dir, d, &r.Daemon[i].Pass, commit); err != nil {
			return err
		}
	}
	after, err := benchenv.Point(ctx, mnt, c, nil)
	if err != nil {
		return err
	}
	r.Update, r.Changed = r.Daemon.pass(before, after), r.Daemon.changed()
	return nil
}

// outsideUpdate runs the update round again, on the same volumes,
// committed the way file-reflink commits without the daemon knowing, then
// btrfs-vdo optimize --full of each updated volume, each a pass of its
// own with cold caches.
func outsideUpdate(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, d *benchenv.Daemon, r *result) error {
	for i, v := range updated(c, target) {
		benchenv.Logf("btrfs-vdo side: update round on %s outside the daemon", v.VID)
		upd, err := c.UpdateRound(ctx, v.VID, 2)
		if err != nil {
			return err
		}
		r.Outside[i] = volumeUpdate{Vol: v, Upd: upd}
	}
	if err := benchenv.SyncFS(mnt); err != nil {
		return err
	}
	for i := range r.Outside {
		var err error
		if r.Outside[i].Changed, err = changedSinceRevision(c, r.Outside[i].Vol.VID); err != nil {
			return err
		}
	}
	for i := range r.Outside {
		vid := r.Outside[i].Vol.VID
		benchenv.Logf("btrfs-vdo side: optimize --full %s", vid)
		optimize := func() (benchenv.Phase, error) { return d.OptimizeFullVolume(ctx, c, vid) }
		if err := daemonPass(ctx, mnt, c.Dir, d, &r.Outside[i].Pass, optimize); err != nil {
			return err
		}
	}
	return nil
}

// changedSinceRevision is how many bytes of vid's image its newest
// revision does not hold in the same place: what its last commit brought.
func changedSinceRevision(c *corpus.Corpus, vid string) (int64, error) {
	p, err := volume.PathsFor(vid)
	if err != nil {
		return 0, err
	}
	revs, err := c.Revisions(vid)
	if err != nil {
		return 0, err
	}
	if len(revs) == 0 {
		return 0, errors.New(vid + " has no revision")
	}
	_, n, err := benchenv.NewData(c.Path(p.Clean), revs[len(revs)-1].Path)
	return n, err
}
