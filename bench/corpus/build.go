// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Shares of an AppVM private's file budget. Shared files are generated
// from the corpus seed alone, so the AppVMs that hold one hold the same
// bytes, as after copying a download into several VMs.
const (
	appText       = 0.40
	appCompressed = 0.15 // compressed files of the system tree
	appRandom     = 0.15 // encrypted or media-like data
	sharedFiles   = 6    // in the corpus
	sharedPerVM   = 3    // in each AppVM
	sharedSize    = 0.10 // of an AppVM private's budget, per shared file
)

// Build makes a corpus with opts in dir, a directory on btrfs (created if
// missing, normally empty).
func Build(ctx context.Context, dir string, opts Options) (*Corpus, error) {
	if opts.Scratch == "" {
		return nil, fmt.Errorf("build corpus in %s: no scratch directory", dir)
	}
	c := &Corpus{Dir: dir, Opts: opts, Volumes: Plan(opts), tree: hostTree{}}
	if !opts.HostFiles {
		c.tree = newGeneratedTree(opts.Seed, generatedTreeBytes(c.Volumes))
	}
	files, err := c.tree.files()
	if err != nil {
		return nil, err
	}
	for i, v := range c.Volumes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := c.buildVolume(ctx, v, files); err != nil {
			return nil, fmt.Errorf("build %s: %w", v.VID, err)
		}
		if err := c.settle(v, baseMtime.Add(time.Duration(i)*volumeMtimeSpacing)); err != nil {
			return nil, fmt.Errorf("build %s: %w", v.VID, err)
		}
	}
	return c, nil
}

// generatedTreeBytes is how large a generated system tree must be for the
// largest template's window of it (see templates) and its AppVMs' share of
// compressed files, with room to spare.
func generatedTreeBytes(vols []Volume) int64 {
	var largest int64
	for _, v := range vols {
		largest = max(largest, budget(v.Size))
	}
	return 2 * largest
}

// budget is how many bytes of files (in whole blocks) an image of size
// bytes gets.
func budget(size int64) int64 {
	return int64(fill * float64(size-journalBytes(size)))
}

func (c *Corpus) buildVolume(ctx context.Context, v Volume, files []sysFile) error {
	p, err := volume.PathsFor(v.VID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Path(p.Dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", p.Dir, err)
	}
	stage, err := os.MkdirTemp(c.Opts.Scratch, "stage-")
	if err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(stage)

	var n int
	switch v.role {
	case templateRoot:
		n, err = c.stageRoot(stage, v, files)
	case templatePrivate:
		n, err = c.stageGenerated(stage, v, []part{{prose, 0.5, "home/user/Documents"}, {source, 0.3, "home/user/src"}, {logs, 0.2, "home/user/.cache"}})
	case appPrivate:
		n, err = c.stageAppPrivate(stage, v, files)
	}
	if err != nil {
		return err
	}
	// Twice the files (directories need inodes too) and a margin.
	return mkfsExt4(ctx, c.Path(p.Clean), stage, v.Size, 2*n+1024, c.uuid(v.VID))
}

// stageRoot stages the template's share of the system tree's files.
func (c *Corpus) stageRoot(stage string, v Volume, files []sysFile) (int, error) {
	i := slices.IndexFunc(templates, func(t template) bool { return t.name == v.vm })
	if i < 0 {
		return 0, fmt.Errorf("%s: no template named %q", v.VID, v.vm)
	}
	t, b := templates[i], float64(budget(v.Size))
	list := shuffled(files, c.Opts.Seed, "templates")
	picked := fit(window(list, int64(t.from*b), int64(t.to*b), t.skip, c.rng(v.VID)), int64(b))
	for _, f := range picked {
		if err := c.tree.stage(stage, f); err != nil {
			return 0, err
		}
	}
	return len(picked), nil
}

// part is a share of an image's budget filled with one kind of content.
type part struct {
	kind  kind
	share float64
	dir   string
}

// stageGenerated fills stage with generated files, parts giving the mix.
func (c *Corpus) stageGenerated(stage string, v Volume, parts []part) (int, error) {
	g := newGenerator(c.Opts.Seed, v.VID)
	var n int
	for _, pt := range parts {
		k, err := writeFiles(g, filepath.Join(stage, pt.dir), pt.kind, int64(pt.share*float64(budget(v.Size))))
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// stageAppPrivate fills stage with an AppVM's home: generated text, the
// system tree's compressed files, random data and some of the corpus's
// shared files.
func (c *Corpus) stageAppPrivate(stage string, v Volume, files []sysFile) (int, error) {
	n, err := c.stageGenerated(stage, v, []part{
		{prose, appText / 3, "home/user/Documents"}, {logs, appText / 3, "home/user/.local/state"},
		{source, appText / 3, "home/user/src"}, {random, appRandom, "home/user/Downloads"},
	})
	if err != nil {
		return 0, err
	}
	b := budget(v.Size)
	var compressed []sysFile
	for _, f := range shuffled(files, c.Opts.Seed, v.VID) {
		if f.compressed() {
			compressed = append(compressed, f)
		}
	}
	for _, f := range window(compressed, 0, int64(appCompressed*float64(b)), 0, c.rng(v.VID)) {
		if err := c.tree.stage(filepath.Join(stage, "home/user/.cache/archives"), f); err != nil {
			return 0, err
		}
		n++
	}
	// Each AppVM holds the shared files that fit its share, in its own
	// order, so every pair of AppVMs has some in common. AppVM privates
	// all have one size, so a shared file is the same in each.
	size := int64(sharedSize*float64(b)) &^ (blockSize - 1)
	kinds := []kind{binary, prose, random}
	for _, i := range c.rng(v.VID + "/shared").Perm(sharedFiles)[:sharedPerVM] {
		g := newGenerator(c.Opts.Seed, fmt.Sprintf("shared-%d", i))
		name := filepath.Join(stage, "home/user/Shared", fmt.Sprintf("shared-%d.dat", i))
		if err := writeFile(g, name, kinds[i%len(kinds)], size); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// rng is a random source fixed by the corpus seed and name.
func (c *Corpus) rng(name string) *rand.Rand {
	return rand.New(rand.NewPCG(c.Opts.Seed, hashString(name)))
}

// uuid is a filesystem UUID fixed by the corpus seed and vid.
func (c *Corpus) uuid(vid string) string {
	r := c.rng("uuid/" + vid)
	a, b := r.Uint64(), r.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", a>>32, a>>16&0xffff, a&0xfff, b>>48&0xfff, b&0xffffffffffff)
}
