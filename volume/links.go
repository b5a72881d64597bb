// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// Hard links planted in the pool directory could reach files outside it
// on the same filesystem, which neither O_NOFOLLOW nor RESOLVE_BENEATH
// sees. The images that are written in place — the dirty image (by the
// VM, and by resize), the precache and the import image (which become
// the dirty or the clean image) — must have exactly one link.
//
// A clean image or a revision may legitimately have more: while a
// snapshot volume's VM runs, its <vol>.img is a hard link of the
// source's clean image (which later becomes a revision), and a commit
// killed between its link and its rename leaves a revision and the clean
// image on one inode. Those are only read, except by the optimizer (which
// rewrites extents with the same data) and by a start with snapshots
// disabled, which renames the clean image to the dirty one for the VM to
// write, as file-reflink does even while snapshots of it run. Before
// these, and for such a dirty image, every other link must be a clean
// image or a revision in the pool.

// links is the number of hard links of the file info describes.
func links(info fs.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// checkSingleLink refuses a file written in place that has other links.
func (f files) checkSingleLink(name string, info fs.FileInfo) error {
	if n := links(info); n != 1 {
		return fmt.Errorf("%s has %d hard links, and an image written in place must have one: %w",
			f.abs(name), n, ErrInvalidName)
	}
	return nil
}

// checkDirtyLinks refuses a dirty image with links it may not have: one
// link, or with snapshots disabled, links only within the pool's images.
func (f files) checkDirtyLinks(name string, info fs.FileInfo, spec Spec) error {
	if spec.SnapshotsDisabled() {
		return f.checkLinksInPool(name, info)
	}
	return f.checkSingleLink(name, info)
}

// statDirty is stat for a dirty image, checked by checkDirtyLinks.
func (f files) statDirty(name string, spec Spec) (fs.FileInfo, error) {
	info, err := f.stat(name)
	if err != nil {
		return nil, err
	}
	return info, f.checkDirtyLinks(name, info, spec)
}

// statSingle is stat for a file written in place: a regular file with
// one link.
func (f files) statSingle(name string) (fs.FileInfo, error) {
	info, err := f.stat(name)
	if err != nil {
		return nil, err
	}
	return info, f.checkSingleLink(name, info)
}

// checkLinksInPool refuses a file that has a link other than name itself
// or a clean image or revision in the pool.
//
// Other volumes' links come and go while the scan runs (a snapshot volume
// starting or stopping links or unlinks the source's image under its own
// lock), so a count that no longer matches the file's is taken again.
func (f files) checkLinksInPool(name string, info fs.FileInfo) error {
	n := links(info)
	for try := 0; n > 1; try++ {
		found, err := f.poolLinks(info)
		if err != nil {
			return err
		}
		if !isCleanOrRevisionName(path.Base(name)) {
			found++ // name itself, which the scan does not count
		}
		if found >= n {
			return nil
		}
		now, err := f.root.Lstat(name)
		if err != nil || !os.SameFile(info, now) || links(now) == n || try == linkScanTries {
			return fmt.Errorf("%s has %d hard links, %d of them no image of the pool: %w",
				f.abs(name), n, n-found, ErrInvalidName)
		}
		n = links(now)
	}
	return nil
}

// linkScanTries bounds the scans of a file whose link count keeps
// changing under them.
const linkScanTries = 3

// poolLinks counts the clean images and revisions of the pool that are
// the file info describes.
func (f files) poolLinks(info fs.FileInfo) (uint64, error) {
	var found uint64
	for _, prefix := range TopDirs {
		vms, err := f.readDir(prefix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		for _, vm := range vms {
			if !vm.IsDir() {
				continue
			}
			n, err := f.linksIn(prefix+"/"+vm.Name(), info)
			if err != nil {
				return 0, err
			}
			found += n
		}
	}
	return found, nil
}

func (f files) linksIn(dir string, info fs.FileInfo) (uint64, error) {
	entries, err := f.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var found uint64
	for _, e := range entries {
		if !e.Type().IsRegular() || !isCleanOrRevisionName(e.Name()) {
			continue
		}
		other, err := f.root.Lstat(dir + "/" + e.Name())
		if err == nil && os.SameFile(info, other) {
			found++
		}
	}
	return found, nil
}

// isCleanOrRevisionName reports whether name is a clean image's or a
// revision's in the file-reflink layout.
func isCleanOrRevisionName(name string) bool {
	if vol, ok := strings.CutSuffix(name, ".img"); ok {
		return volumeNameClash(vol) == ""
	}
	vol, rest, ok := strings.Cut(name, ".img.")
	return ok && volumeNameClash(vol) == "" && revisionFile.MatchString(".img."+rest)
}
