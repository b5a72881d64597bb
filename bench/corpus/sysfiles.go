// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// systemRoots are where template roots take their files from with
// Options.HostFiles: the bulk of a real template's root filesystem.
var systemRoots = []string{"/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/share"}

// maxSystemFile leaves out the few huge files (toolchains, databases) so a
// small corpus is not made of one of them.
const maxSystemFile = 16 << 20

// compressedExt are suffixes of files whose data is already compressed.
var compressedExt = []string{".gz", ".xz", ".bz2", ".zst", ".jpg", ".jpeg", ".png", ".zip", ".woff2"}

// sysFile is a regular file of a system tree (see systemTree).
type sysFile struct {
	path string
	size int64
}

// blocks is the space the file takes in a 4 KiB-block filesystem.
func (f sysFile) blocks() int64 { return (f.size + blockSize - 1) / blockSize * blockSize }

// compressed reports whether the file's name says its data is compressed.
func (f sysFile) compressed() bool {
	for _, ext := range compressedExt {
		if strings.HasSuffix(f.path, ext) {
			return true
		}
	}
	return false
}

// systemFiles lists the readable regular files under systemRoots in
// lexical order, so the same machine gives the same list every time.
func systemFiles() ([]sysFile, error) {
	var out []sysFile
	for _, root := range systemRoots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) || os.IsPermission(err) {
					return nil
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil || info.Size() == 0 || info.Size() > maxSystemFile {
				return nil // a file that vanished or cannot be read is left out
			}
			out = append(out, sysFile{path: path, size: info.Size()})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list system files under %s: %w", root, err)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no system files found under %v", systemRoots)
	}
	return out, nil
}

// shuffled returns a copy of files in an order fixed by seed.
func shuffled(files []sysFile, seed uint64, salt string) []sysFile {
	out := append([]sysFile(nil), files...)
	rng := rand.New(rand.NewPCG(seed, hashString(salt)))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// window picks the files of list whose cumulative start lies in
// [from, to) bytes, leaving each out with probability skip.
func window(list []sysFile, from, to int64, skip float64, rng *rand.Rand) []sysFile {
	var out []sysFile
	var at int64
	for _, f := range list {
		if at >= to {
			break
		}
		if at >= from && rng.Float64() >= skip {
			out = append(out, f)
		}
		at += f.blocks()
	}
	return out
}

// fit returns the longest prefix of files that, with the directories
// they need (a block each), takes at most limit bytes.
func fit(files []sysFile, limit int64) []sysFile {
	dirs := make(map[string]bool)
	var used int64
	for i, f := range files {
		used += f.blocks()
		for d := filepath.Dir(f.path); !dirs[d] && d != "/"; d = filepath.Dir(d) {
			dirs[d] = true
			used += blockSize
		}
		if used > limit {
			return files[:i]
		}
	}
	return files
}

// copySystemFile copies f into stage at its own path, keeping its mode
// and mtime as a package manager would install it.
func copySystemFile(stage string, f sysFile) error {
	dst := filepath.Join(stage, f.path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	src, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	_, err = io.Copy(out, io.LimitReader(src, f.size))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(dst, info.ModTime(), info.ModTime())
	}
	if err != nil {
		return fmt.Errorf("stage %s: %w", f.path, err)
	}
	return nil
}
