// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// DefaultUpdate is the share of a template root's image size an update
// round writes as new file data unless Options.Update says otherwise;
// with ext4's metadata and journal writes about 6–8 % of the image's
// blocks change.
const DefaultUpdate = 0.06

// AppUpdate is the share of an AppVM private's image size its update
// round writes: a user's edits of documents, sources and logs, a little
// next to a template's package upgrade.
const AppUpdate = 0.02

// minUpdatedFile leaves tiny files alone, so that an update is mostly file
// data rather than inode and directory blocks.
const minUpdatedFile = 64 << 10

// appUpdatedDirs are where an AppVM private's update round rewrites files,
// each with the kind of content it holds.
var appUpdatedDirs = []struct {
	dir  string
	kind kind
}{
	{"/home/user/Documents/", prose},
	{"/home/user/.local/state/", logs},
	{"/home/user/src/", source},
}

// Update is what an update round wrote.
type Update struct {
	Files int   // files replaced
	Bytes int64 // bytes of new file data written
}

// rewrite says whether an update round rewrites the file at path (inside
// the mounted image), and with which kind of content.
type rewrite func(path string) (kind, bool)

// ApplyUpdate changes the files of vid, a template root or an AppVM
// private, inside the ext4 image img (the volume's image, or its dirty
// image while it runs) as a package upgrade or a user's edits do: each
// chosen file is written anew next to itself and renamed over the old
// one, until the volume's update share of the image is new (a template
// root's Options.Update, an AppVM private's AppUpdate).
// round picks which files and what new data, the same for the same corpus.
func (c *Corpus) ApplyUpdate(ctx context.Context, img, vid string, round int) (u Update, err error) {
	share, which, err := c.updatePlan(vid)
	if err != nil {
		return Update{}, err
	}
	info, err := os.Stat(img)
	if err != nil {
		return Update{}, fmt.Errorf("update %s: %w", img, err)
	}
	mnt, err := os.MkdirTemp(c.Opts.Scratch, "update-")
	if err != nil {
		return Update{}, fmt.Errorf("update %s: %w", img, err)
	}
	defer os.Remove(mnt)
	unmount, err := mountImage(ctx, img, mnt)
	if err != nil {
		return Update{}, fmt.Errorf("update %s: %w", img, err)
	}
	defer func() {
		if uerr := unmount(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("update %s: %w", img, uerr))
		}
	}()
	salt := vid + "/update-" + strconv.Itoa(round)
	u, err = c.rewriteFiles(mnt, int64(share*float64(info.Size())), salt, which)
	if err != nil {
		return u, fmt.Errorf("update %s: %w", img, err)
	}
	return u, nil
}

// updatePlan is the share of vid's image its update round writes and the
// files it rewrites: any file of a template root (text under /usr/share,
// binaries elsewhere), the user's text files of an AppVM private.
func (c *Corpus) updatePlan(vid string) (float64, rewrite, error) {
	i := slices.IndexFunc(c.Volumes, func(v Volume) bool { return v.VID == vid })
	if i < 0 {
		return 0, nil, fmt.Errorf("update %s: not a volume of the corpus", vid)
	}
	switch c.Volumes[i].role {
	case templateRoot:
		share := cmp.Or(c.Opts.Update, DefaultUpdate)
		return share, func(path string) (kind, bool) {
			if strings.Contains(path, "/usr/share/") {
				return prose, true
			}
			return binary, true
		}, nil
	case appPrivate:
		return AppUpdate, func(path string) (kind, bool) {
			for _, d := range appUpdatedDirs {
				if strings.Contains(path, d.dir) {
					return d.kind, true
				}
			}
			return 0, false
		}, nil
	}
	return 0, nil, fmt.Errorf("update %s: only template roots and AppVM privates have an update round", vid)
}

// rewriteFiles replaces randomly chosen files under root that which
// takes with new content of the same size until target bytes are written.
// A file that would overshoot target by more than half is left alone, so
// that a small update stays small.
func (c *Corpus) rewriteFiles(root string, target int64, salt string, which rewrite) (Update, error) {
	type candidate struct {
		path string
		kind kind
		size int64
	}
	var candidates []candidate
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		k, ok := which(path)
		if info, err := d.Info(); ok && err == nil && info.Size() >= minUpdatedFile {
			candidates = append(candidates, candidate{path, k, info.Size()})
		}
		return nil
	})
	if err != nil {
		return Update{}, fmt.Errorf("list files: %w", err)
	}
	rng := c.rng(salt)
	rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	g := newGenerator(c.Opts.Seed, salt)
	var u Update
	for _, f := range candidates {
		if u.Bytes >= target {
			return u, nil
		}
		if u.Bytes+f.size > target+target/2 {
			continue
		}
		if err := writeFile(g, f.path+".dpkg-new", f.kind, f.size); err != nil {
			return u, err
		}
		if err := os.Rename(f.path+".dpkg-new", f.path); err != nil {
			return u, fmt.Errorf("replace %s: %w", f.path, err)
		}
		u.Files++
		u.Bytes += f.size
	}
	if u.Bytes < target {
		return u, fmt.Errorf("only %d bytes of files to rewrite, want %d", u.Bytes, target)
	}
	return u, nil
}

// UpdateRound updates vid and commits the change the way file-reflink
// does, without a daemon. Its start renames the precache to the dirty
// image (or reflinks the image to it); the update is written into the
// dirty image; its commit reflinks the image to the next revision (named
// after the image's mtime), prunes older revisions to one, renames the
// dirty image over the image and makes a new precache. The image is then
// a new file, whose data not shared with the revision is exactly what
// ApplyUpdate wrote.
func (c *Corpus) UpdateRound(ctx context.Context, vid string, round int) (Update, error) {
	p, err := volume.PathsFor(vid)
	if err != nil {
		return Update{}, err
	}
	if err := c.startDirty(p); err != nil {
		return Update{}, fmt.Errorf("update %s: %w", vid, err)
	}
	u, err := c.ApplyUpdate(ctx, c.Path(p.Dirty), vid, round)
	if err != nil {
		return u, err
	}
	if err := c.commitDirty(vid, p); err != nil {
		return u, fmt.Errorf("update %s: %w", vid, err)
	}
	return u, nil
}

// startDirty makes the dirty image of the volume p names as file-reflink's
// start does.
func (c *Corpus) startDirty(p volume.Paths) error {
	err := os.Rename(c.Path(p.Precache), c.Path(p.Dirty))
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	info, err := os.Stat(c.Path(p.Clean))
	if err != nil {
		return err
	}
	return reflink(c.Path(p.Clean), c.Path(p.Dirty), info.ModTime())
}

// commitDirty commits the dirty image of vid, whose files p names, as
// file-reflink's commit does.
func (c *Corpus) commitDirty(vid string, p volume.Paths) error {
	img := c.Path(p.Clean)
	info, err := os.Stat(img)
	if err != nil {
		return err
	}
	old, err := c.Revisions(vid)
	if err != nil {
		return err
	}
	var next uint64 = 1
	if len(old) > 0 {
		next = old[len(old)-1].N + 1
	}
	mtime := info.ModTime()
	rev := c.Path(p.Revision(strconv.FormatUint(next, 10), mtime.UTC().Format(timestampLayout)))
	if err := reflink(img, rev, mtime); err != nil {
		return err
	}
	for _, r := range old {
		if err := os.Remove(r.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(c.Path(p.Dirty), img); err != nil {
		return err
	}
	if info, err = os.Stat(img); err != nil {
		return err
	}
	return reflink(img, c.Path(p.Precache), info.ModTime())
}
