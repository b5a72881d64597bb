// SPDX-License-Identifier: GPL-2.0-or-later

// Package corpus builds a deterministic stand-in for a Qubes storage pool
// in the file-reflink layout, for benchmarks of compression and dedup.
//
// A corpus has template roots (ext4 images made by mkfs.ext4 -d from
// different, overlapping sets of the files of a system tree: one generated
// to look like /usr, or this machine's /usr with Options.HostFiles),
// template and AppVM privates (ext4 images of generated text,
// already-compressed data and files copied into several AppVMs), and for
// every image a precache and one revision, both reflinks, as file-reflink
// leaves a stopped volume. An update round then rewrites part of a
// template root the way a package upgrade does, or a little of an AppVM
// private the way its user's edits do, committed as file-reflink commits.
//
// The same seed gives the same files with the same contents on every
// machine; with HostFiles only on the same machine. ext4 inode times may
// differ between two builds.
package corpus

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const blockSize = 4096

// Image sizes at scale 1: about 2.2 GiB of images holding about 1.5 GiB
// of data. The floors keep tiny scales valid ext4 images with room for
// files next to the smallest journal.
const (
	rootSize           = 448 << 20
	templatePrivSize   = 32 << 20
	appPrivSize        = 192 << 20
	minRootSize        = 16 << 20
	minPrivSize        = 12 << 20
	fill               = 0.70 // share of an image's usable space holding files
	revisionAge        = 24 * time.Hour
	timestampLayout    = "2006-01-02T15:04:05"
	volumeMtimeSpacing = time.Hour
)

// baseMtime is when the corpus's images were last committed; fixed so
// that revision names are the same in every build.
var baseMtime = time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC)

// A template takes the system tree's files whose place in the corpus's shuffled
// list falls in [from, to) times a root's file budget, leaving out a
// share skip of them: so templates share many files but not all.
type template struct {
	name           string
	from, to, skip float64
}

var templates = []template{
	{"debian-12-xfce", 0, 1.08, 0.07},
	{"debian-12-minimal", 0, 0.7, 0},
	{"fedora-41-xfce", 0.45, 1.45, 0},
}

var appVMs = []string{"work", "personal", "untrusted", "vault"}

// Options shape a corpus.
type Options struct {
	Scale float64 // 1 is about 2.2 GiB of images; image sizes scale linearly, with floors
	Seed  uint64
	// Update is the share of a template root's image an update round
	// writes as new file data; 0 means DefaultUpdate.
	Update float64
	// Scratch is a directory for staging trees and mount points, outside
	// the pool directory; files there are removed when no longer needed.
	Scratch string
	// HostFiles makes template roots of this machine's files under /usr
	// instead of a generated tree: real programs and libraries, but the
	// corpus, and what is measured on it, then differs between machines.
	HostFiles bool
}

// Volume is one volume of the corpus.
type Volume struct {
	VID  string // as qubesd names it, e.g. vm-templates/debian-12-xfce/root
	Size int64  // the image's size in bytes
	role role
	vm   string
}

type role int

const (
	templateRoot role = iota
	templatePrivate
	appPrivate
)

// Corpus is a pool directory built by Build.
type Corpus struct {
	Dir     string
	Opts    Options
	Volumes []Volume
	tree    systemTree // where template roots take their files from
}

// Plan lists the volumes a corpus with opts has, in build order.
func Plan(opts Options) []Volume {
	size := func(base, floor int64) int64 {
		s := int64(float64(base)*opts.Scale) &^ (1<<20 - 1)
		return max(s, floor)
	}
	var out []Volume
	for _, t := range templates {
		out = append(out, Volume{VID: "vm-templates/" + t.name + "/root", Size: size(rootSize, minRootSize), role: templateRoot, vm: t.name})
	}
	for _, t := range templates {
		out = append(out, Volume{VID: "vm-templates/" + t.name + "/private", Size: size(templatePrivSize, minPrivSize), role: templatePrivate, vm: t.name})
	}
	for _, vm := range appVMs {
		out = append(out, Volume{VID: "appvms/" + vm + "/private", Size: size(appPrivSize, minPrivSize), role: appPrivate, vm: vm})
	}
	return out
}

// Roots returns the template roots, volumes an update round changes.
func (c *Corpus) Roots() []Volume { return c.withRole(templateRoot) }

// AppPrivates returns the AppVM privates, volumes an update round
// changes a little.
func (c *Corpus) AppPrivates() []Volume { return c.withRole(appPrivate) }

func (c *Corpus) withRole(r role) []Volume {
	var out []Volume
	for _, v := range c.Volumes {
		if v.role == r {
			out = append(out, v)
		}
	}
	return out
}

// VolumeDirs are the directories holding the pool's volumes, leaving out
// whatever else a driver keeps in the pool directory.
func (c *Corpus) VolumeDirs() []string {
	return []string{c.Path("appvms"), c.Path("vm-templates")}
}

// Path returns the absolute path of a file of the pool, given relative to
// the pool directory as volume.Paths names it.
func (c *Corpus) Path(rel string) string { return filepath.Join(c.Dir, rel) }

// Revision is a revision file of a volume.
type Revision struct {
	N    uint64 // the revision number
	Path string // absolute
}

// Revisions returns vid's revisions, oldest first.
func (c *Corpus) Revisions(vid string) ([]Revision, error) {
	p, err := volume.PathsFor(vid)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(c.Path(p.Dir))
	if err != nil {
		return nil, fmt.Errorf("list revisions of %s: %w", vid, err)
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(p.Name) + `\.img\.([1-9][0-9]*)@[0-9T:-]+Z$`)
	var revs []Revision
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			revs = append(revs, Revision{n, c.Path(filepath.Join(p.Dir, e.Name()))})
		}
	}
	slices.SortFunc(revs, func(a, b Revision) int { return cmp.Compare(a.N, b.N) })
	return revs, nil
}

// reflink makes dst a reflink of src with the given mtime, as file-reflink
// does for revisions and precaches.
func reflink(src, dst string, mtime time.Time) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("reflink %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("reflink %s: %w", src, err)
	}
	err = btrfs.Clone(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(dst, mtime, mtime)
	}
	if err != nil {
		return fmt.Errorf("reflink %s to %s: %w", src, dst, err)
	}
	return nil
}

// settle gives a freshly written image its mtime, one revision and a
// precache, as file-reflink leaves a volume after its last commit.
func (c *Corpus) settle(v Volume, mtime time.Time) error {
	p, err := volume.PathsFor(v.VID)
	if err != nil {
		return err
	}
	img := c.Path(p.Clean)
	if err := os.Chtimes(img, mtime, mtime); err != nil {
		return fmt.Errorf("set mtime of %s: %w", img, err)
	}
	revTime := mtime.Add(-revisionAge)
	if err := reflink(img, c.Path(p.Revision("1", revTime.Format(timestampLayout))), revTime); err != nil {
		return err
	}
	return reflink(img, c.Path(p.Precache), mtime)
}
