// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// systemTree is where template roots take their files from: this
// machine's /usr (hostTree) or one generated from the seed (generatedTree).
type systemTree interface {
	// files lists the tree's regular files in an order fixed for the tree.
	files() ([]sysFile, error)
	// stage writes f into dir at its own path, with its mode and mtime.
	stage(dir string, f sysFile) error
}

// hostTree is this machine's files under systemRoots: real data, but a
// corpus made of it differs from one machine to the next.
type hostTree struct{}

func (hostTree) files() ([]sysFile, error)         { return systemFiles() }
func (hostTree) stage(dir string, f sysFile) error { return copySystemFile(dir, f) }

// generatedTree stands in for /usr with the same kinds of files in the same
// places, sized as on a Debian system, made from the seed and each file's
// path alone: the same seed gives the same tree on every machine, and a
// file that two templates hold has the same bytes in both.
type generatedTree struct {
	seed  uint64
	bytes int64 // the tree's size, in whole blocks
	words *generator
}

func newGeneratedTree(seed uint64, bytes int64) *generatedTree {
	return &generatedTree{seed: seed, bytes: bytes, words: newGenerator(seed, "system-tree")}
}

// File sizes of the generated tree are log-normal, e^N(ln sizeMedian,
// sizeSigma), at most maxSystemFile: as in a Debian /usr, half the files are
// under a few KiB and most bytes are in files over 64 KiB.
const (
	sizeMedian = 3 << 10
	sizeSigma  = 2.0
	// compressedShare of the files are gzipped (changelogs, man pages):
	// data that does not compress again.
	compressedShare = 0.1
	// packages per area, each a directory of its own
	packagesPerArea = 64
)

// treeMtime is when the generated tree's files were installed.
var treeMtime = baseMtime.Add(-90 * 24 * time.Hour)

// treeArea is a part of /usr: where its files are, what they hold, their
// name suffix, and its share of the files.
type treeArea struct {
	dir   string
	kind  kind
	ext   string
	share float64
}

var treeAreas = []treeArea{
	{"/usr/bin", binary, "", 0.02},
	{"/usr/lib/x86_64-linux-gnu", binary, ".so", 0.38},
	{"/usr/lib/python3/dist-packages", source, ".py", 0.15},
	{"/usr/share/doc", prose, "", 0.20},
	{"/usr/share/locale", prose, ".mo", 0.25},
}

func (t *generatedTree) files() ([]sysFile, error) {
	g := t.words.withStream(t.seed, "system-tree/list")
	var out []sysFile
	var total int64
	for n := 0; total < t.bytes; n++ {
		area := pickArea(g.rng.Float64())
		ext := area.ext
		if area.kind != binary && g.rng.Float64() < compressedShare {
			ext += ".gz"
		}
		pkg := t.words.words[g.rng.IntN(packagesPerArea)]
		size := int64(math.Exp(math.Log(sizeMedian) + sizeSigma*g.rng.NormFloat64()))
		f := sysFile{
			path: fmt.Sprintf("%s/%s/%s-%d%s", area.dir, pkg, g.pick(), n, ext),
			size: min(max(size, 1), maxSystemFile),
		}
		out = append(out, f)
		total += f.blocks()
	}
	return out, nil
}

// pickArea maps u in [0, 1) onto treeAreas by their shares.
func pickArea(u float64) treeArea {
	for _, a := range treeAreas {
		if u < a.share {
			return a
		}
		u -= a.share
	}
	return treeAreas[len(treeAreas)-1]
}

// stage writes f's content: random for compressed files, otherwise the
// kind of its area, from a stream fixed by the seed and f's path.
func (t *generatedTree) stage(dir string, f sysFile) error {
	k := binary
	for _, a := range treeAreas {
		if strings.HasPrefix(f.path, a.dir+"/") {
			k = a.kind
		}
	}
	if f.compressed() {
		k = random
	}
	dst := filepath.Join(dir, f.path)
	if err := writeFile(t.words.withStream(t.seed, "system-tree"+f.path), dst, k, f.size); err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	mode := os.FileMode(0o644)
	if k == binary && !strings.HasSuffix(f.path, ".so") {
		mode = 0o755
	}
	if err := os.Chmod(dst, mode); err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	if err := os.Chtimes(dst, treeMtime, treeMtime); err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	return nil
}
