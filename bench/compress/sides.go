package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// phase is the cost of one pass.
type phase struct {
	Note       string // why it was not measured, or a caveat
	Ran        bool
	Wall       time.Duration
	CPU        time.Duration // the tool's processes (defragment; daemon and CLI)
	MachineCPU time.Duration // every CPU, kernel compression threads included
}

// Points at which each side is measured.
const (
	generated = iota
	afterFull
	afterCommit // the update round committed, not yet optimised
	afterUpdate
	points
)

// result is what one side did to its copy of the corpus.
type result struct {
	At          [points]usage
	Full        phase
	Update      phase // after the update round's commit
	Whole       phase // compressing the updated image from scratch
	Upd         corpus.Update
	NewRaw      int64 // bytes of the image the update wrote
	NewAtCommit int64 // what the new data took on disk when committed
	NewStored   int64 // what it takes after the pass
}

// clock reads a CPU time that grows with a side's work.
type clock func() (time.Duration, error)

// timed runs work and measures its wall and CPU time.
func timed(cpu clock, work func() error) (phase, error) {
	m0, err := machineCPU()
	if err != nil {
		return phase{}, err
	}
	c0, err := cpu()
	if err != nil {
		return phase{}, err
	}
	start := time.Now()
	if err := work(); err != nil {
		return phase{}, err
	}
	p := phase{Ran: true, Wall: time.Since(start)}
	c1, err := cpu()
	if err != nil {
		return phase{}, err
	}
	m1, err := machineCPU()
	if err != nil {
		return phase{}, err
	}
	p.CPU, p.MachineCPU = c1-c0, m1-m0
	return p, nil
}

// pairs lists each volume's image with its newest revision.
func pairs(c *corpus.Corpus) ([]pair, error) {
	var out []pair
	for _, v := range c.Volumes {
		p, err := volume.PathsFor(v.VID)
		if err != nil {
			return nil, err
		}
		revs, err := c.Revisions(v.VID)
		if err != nil {
			return nil, err
		}
		if len(revs) == 0 {
			return nil, fmt.Errorf("%s has no revision", v.VID)
		}
		out = append(out, pair{v.VID, c.Path(p.Clean), revs[len(revs)-1].Path})
	}
	return out, nil
}

// point measures the side's filesystem mnt. running maps the image of a
// started volume to its dirty image: that pair is measured instead, since
// the commit turns the image into the revision and the dirty image into
// the image.
func point(ctx context.Context, mnt string, c *corpus.Corpus, running map[string]string) (usage, error) {
	ps, err := pairs(c)
	if err != nil {
		return usage{}, err
	}
	for i, p := range ps {
		if dirty, ok := running[p.image]; ok {
			ps[i] = pair{p.vid, dirty, p.image}
		}
	}
	return measure(ctx, mnt, c.VolumeDirs(), ps)
}

// runDefrag runs the seed recipe's defragment and waits until the data it
// compressed is on disk: defragment returns once writeback is queued.
func runDefrag(ctx context.Context, mnt string, args ...string) error {
	if err := run(ctx, "btrfs", append([]string{"filesystem", "defragment", "-czstd"}, args...)...); err != nil {
		return err
	}
	return syncFS(mnt)
}

// defragSide runs the seed recipe on c: defragment -r -czstd over the
// pool, the update round committed as file-reflink does, then defragment
// of the updated image.
func defragSide(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume) (result, error) {
	var r result
	var err error
	cpu := childrenCPU
	if r.At[generated], err = point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	logf("defrag side: defragment -r -czstd %s", c.Dir)
	if r.Full, err = timed(cpu, func() error { return runDefrag(ctx, mnt, "-r", c.Dir) }); err != nil {
		return r, err
	}
	if r.At[afterFull], err = point(ctx, mnt, c, nil); err != nil {
		return r, err
	}

	logf("defrag side: update round on %s", target.VID)
	if r.Upd, err = c.UpdateRound(ctx, target.VID, 1); err != nil {
		return r, err
	}
	if r.At[afterCommit], err = point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	p, err := volume.PathsFor(target.VID)
	if err != nil {
		return r, err
	}
	img := c.Path(p.Clean)
	revs, err := c.Revisions(target.VID)
	if err != nil {
		return r, err
	}
	spans, raw, err := newData(img, revs[len(revs)-1].Path)
	if err != nil {
		return r, err
	}
	r.NewRaw = raw
	if r.NewAtCommit, err = storedBytes(img, spans); err != nil {
		return r, err
	}
	logf("defrag side: defragment -czstd %s", img)
	if r.Update, err = timed(cpu, func() error { return runDefrag(ctx, mnt, img) }); err != nil {
		return r, err
	}
	// A defragment always rewrites the whole file: that is its whole-image pass.
	r.Whole = r.Update
	if r.At[afterUpdate], err = point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	r.NewStored, err = storedBytes(img, spans)
	return r, err
}

// benchPool is the name the daemon knows the corpus's pool by.
const benchPool = "bench"

// vdoSide runs btrfs-vdo on c: optimize --full over the pool, then the
// update round through the daemon (start, update the dirty image, stop),
// then waits for the background job the commit queued.
func vdoSide(ctx context.Context, mnt string, c *corpus.Corpus, target corpus.Volume, d *daemon) (result, error) {
	var r result
	var err error
	pool := api.Pool{Name: benchPool, DirPath: c.Dir}
	if err := d.call(ctx, api.OpPoolSetup, api.PoolSetupArgs{Pool: pool, SetupCheck: true}, nil); err != nil {
		return r, err
	}
	if r.At[generated], err = point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	logf("btrfs-vdo side: optimize --full %s", c.Dir)
	if r.Full, err = optimizeFull(ctx, d, c.Dir); err != nil {
		return r, err
	}
	if r.At[afterFull], err = point(ctx, mnt, c, nil); err != nil {
		return r, err
	}

	logf("btrfs-vdo side: update round on %s through the daemon", target.VID)
	vol := api.VolumeArgs{Pool: pool, Volume: api.Volume{
		VID: target.VID, RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: target.Size,
	}}
	if err := d.call(ctx, api.OpVolumeStart, vol, nil); err != nil {
		return r, err
	}
	p, err := volume.PathsFor(target.VID)
	if err != nil {
		return r, err
	}
	dirty, img := c.Path(p.Dirty), c.Path(p.Clean)
	if r.Upd, err = c.ApplyUpdate(ctx, dirty, target.VID, 1); err != nil {
		return r, err
	}
	if r.At[afterCommit], err = point(ctx, mnt, c, map[string]string{img: dirty}); err != nil {
		return r, err
	}
	spans, raw, err := newData(dirty, img)
	if err != nil {
		return r, err
	}
	r.NewRaw = raw
	if r.NewAtCommit, err = storedBytes(dirty, spans); err != nil {
		return r, err
	}
	if r.Update, err = commitAndWait(ctx, d, vol); err != nil {
		return r, err
	}
	if r.At[afterUpdate], err = point(ctx, mnt, c, nil); err != nil {
		return r, err
	}
	if r.NewStored, err = storedBytes(img, spans); err != nil {
		return r, err
	}
	if r.Full.Ran {
		r.Whole, err = wholeImagePass(ctx, mnt, img, target.VID, d)
	} else {
		r.Whole = phase{Note: r.Full.Note}
	}
	return r, err
}

// optimizeFull times btrfs-vdo optimize --full over dir: the CLI queues
// the work, the benchmark waits for it.
func optimizeFull(ctx context.Context, d *daemon, dir string) (phase, error) {
	var outcomes []api.JobOutcome
	began := time.Now()
	p, err := timed(d.cpu, func() error {
		if _, err := d.cli(ctx, "optimize", "--full", "--no-wait", "--json", dir); err != nil {
			return err
		}
		var err error
		outcomes, err = d.waitJobs(ctx, dir, "", began)
		return err
	})
	if errors.Is(err, errNotAvailable) {
		return phase{Note: "not available yet: " + err.Error()}, nil
	}
	p.Note = jobErrors(outcomes, "")
	return p, err
}

// commitAndWait stops the volume (the commit) and waits for the
// background job it queued.
func commitAndWait(ctx context.Context, d *daemon, vol api.VolumeArgs) (phase, error) {
	var outcomes []api.JobOutcome
	var waitErr error
	began := time.Now()
	p, err := timed(d.cpu, func() error {
		if err := d.call(ctx, api.OpVolumeStop, vol, nil); err != nil {
			return err
		}
		outcomes, waitErr = d.waitJobs(ctx, vol.Pool.DirPath, vol.Volume.VID, began)
		if errors.Is(waitErr, errNotAvailable) {
			return nil // the commit alone is still worth timing
		}
		return waitErr
	})
	if err != nil {
		return p, err
	}
	if waitErr != nil {
		p.Note = "commit only, no background job awaited: " + waitErr.Error()
		return p, nil
	}
	p.Note = jobErrors(outcomes, vol.Volume.VID)
	return p, nil
}

// jobErrors describes failed jobs among outcomes, and a missing job for
// vid when vid is not "".
func jobErrors(outcomes []api.JobOutcome, vid string) string {
	var notes []string
	found := vid == ""
	for _, o := range outcomes {
		found = found || o.VID == vid
		if o.Error != "" {
			notes = append(notes, fmt.Sprintf("job for %s failed: %s", o.VID, o.Error))
		}
	}
	if !found {
		notes = append(notes, fmt.Sprintf("no job for %s finished within %v of its commit going idle", vid, jobAppearWait))
	}
	return strings.Join(notes, "; ")
}

// wholeImagePass times optimize --full over a pool holding only a plain
// copy of img (no revision, nothing shared): compressing the whole image.
func wholeImagePass(ctx context.Context, mnt, img, vid string, d *daemon) (phase, error) {
	dir := filepath.Join(mnt, "whole")
	dst := filepath.Join(dir, vid+".img")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return phase{}, fmt.Errorf("whole-image pool: %w", err)
	}
	if err := copyData(img, dst); err != nil {
		return phase{}, err
	}
	if err := syncFS(mnt); err != nil {
		return phase{}, err
	}
	pool := api.Pool{Name: "whole", DirPath: dir}
	if err := d.call(ctx, api.OpPoolSetup, api.PoolSetupArgs{Pool: pool, SetupCheck: true}, nil); err != nil {
		return phase{}, err
	}
	logf("btrfs-vdo side: optimize --full over a plain copy of %s", vid)
	return optimizeFull(ctx, d, dir)
}

// copyData copies src's data regions into a new file dst of the same
// size, leaving holes as holes: new, unshared, uncompressed extents.
func copyData(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	err = copyRegions(in, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

func copyRegions(in, out *os.File) error {
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if err := out.Truncate(info.Size()); err != nil {
		return err
	}
	fd := int(in.Fd())
	for off := int64(0); off < info.Size(); {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil
		}
		if err != nil {
			return err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, start), io.NewSectionReader(in, start, end-start)); err != nil {
			return err
		}
		off = end
	}
	return nil
}
