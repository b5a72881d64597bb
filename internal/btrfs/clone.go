// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Clone makes dst share all of src's extents (FICLONE), like
// cp --reflink=always. dst's previous contents are replaced and its size
// becomes src's. Nothing is copied, so it is fast for any size.
func Clone(dst, src *os.File) error {
	if err := iocClone(dst, src); err != nil {
		return fmt.Errorf("clone %s into %s: %w", src.Name(), dst.Name(), err)
	}
	return nil
}

// CloneUnsupported reports whether err, from Clone, means that reflinks
// are not possible for this pair of files (different filesystems, a
// filesystem without reflink, an unsuitable file), so the caller should
// fall back to copying bytes. It matches the errno list of Qubes'
// file-reflink driver.
func CloneUnsupported(err error) bool {
	for _, e := range []error{unix.EBADF, unix.EINVAL, unix.EOPNOTSUPP, unix.EXDEV} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// IsBtrfs reports whether path is on a btrfs filesystem.
func IsBtrfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	// uint32: f_type is a signed word on some platforms and the magic has bit 31 set.
	return uint32(st.Type) == unix.BTRFS_SUPER_MAGIC, nil
}

// reflinkProbeSize is the amount of data SupportsReflink clones. A full
// block keeps btrfs from storing it inline, since some kernels refuse to
// clone inline extents and would give a false "unsupported".
const reflinkProbeSize = 4096

// SupportsReflink reports whether files in dir can be reflinked into each
// other, by cloning a small probe file. The probe files are anonymous
// (O_TMPFILE) where the filesystem allows it, otherwise named temporary
// files removed right after creation, so nothing is left behind.
func SupportsReflink(dir string) (bool, error) {
	src, err := openProbe(dir)
	if err != nil {
		return false, err
	}
	defer src.Close()
	dst, err := openProbe(dir)
	if err != nil {
		return false, err
	}
	defer dst.Close()

	if _, err := src.Write(make([]byte, reflinkProbeSize)); err != nil {
		return false, fmt.Errorf("probe reflink in %s: %w", dir, err)
	}
	err = Clone(dst, src)
	switch {
	case err == nil:
		return true, nil
	case CloneUnsupported(err):
		return false, nil
	default:
		return false, fmt.Errorf("probe reflink in %s: %w", dir, err)
	}
}

// openProbe opens an unnamed read-write file in dir.
func openProbe(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDWR|unix.O_TMPFILE, 0o600)
	if err == nil {
		return f, nil
	}
	// EISDIR: kernel older than O_TMPFILE; EOPNOTSUPP: the filesystem
	// lacks it. Anything else (EACCES, ENOENT, ...) is a real error.
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) {
		return nil, fmt.Errorf("open probe file in %s: %w", dir, err)
	}
	f, err = os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		return nil, fmt.Errorf("open probe file in %s: %w", dir, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("open probe file in %s: %w", dir, err)
	}
	return f, nil
}
