// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// fileKind is the part a file plays in its volume (see volume/doc.go).
type fileKind uint8

const (
	kindImage    fileKind = 1 << iota // <vol>.img
	kindPrecache                      // <vol>-precache.img
	kindRevision                      // <vol>.img.<N>@<time>Z
	kindOther                         // dirty and import images, temp files: left alone
)

var (
	revisionName = regexp.MustCompile(`^(.+)\.img\.[0-9]+@[^/]*Z$`)
	suffixKinds  = []struct {
		suffix string
		kind   fileKind
	}{{"-precache.img", kindPrecache}, {"-dirty.img", kindOther}, {"-import.img", kindOther}, {".img", kindImage}}
)

// classify returns the kind of a file in a VM's directory and the volume
// it belongs to.
func classify(name string) (fileKind, string) {
	if strings.Contains(name, "~") {
		return kindOther, strings.SplitN(name, "~", 2)[0]
	}
	if m := revisionName.FindStringSubmatch(name); m != nil {
		return kindRevision, m[1]
	}
	for _, s := range suffixKinds {
		if vol, ok := strings.CutSuffix(name, s.suffix); ok && vol != "" {
			return s.kind, vol
		}
	}
	return kindOther, name
}

// vmDirs are the pool's VM directories, templates first: the order in which
// a full optimization visits them, which decides which copy of a block is
// kept.
var vmDirs = []struct{ dir, kind string }{{"vm-templates", "template"}, {"appvms", "appvm"}}

// poolFile is one regular file of a VM's directory, open read-only.
type poolFile struct {
	f      *os.File
	rel    string // relative to the pool directory
	vm     int
	volume int
	kind   fileKind
	noCOW  bool
}

// vmInfo names a VM directory.
type vmInfo struct{ name, kind string }

// layout lists the pool's VMs and opens their files, in visiting order.
type layout struct {
	root    *os.File // the pool directory, for the filesystem's ioctls
	vms     []vmInfo
	volumes []string // "appvms/work/private"
	files   []poolFile
}

func (l *layout) close() {
	for _, pf := range l.files {
		pf.f.Close()
	}
	l.root.Close()
}

// readLayout opens every regular file in DIR/vm-templates/*/ and
// DIR/appvms/*/, following no symlink and changing no access time.
func readLayout(dir string) (*layout, error) {
	root, err := openNoAtime(unix.AT_FDCWD, dir, dir, unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(root.Fd()), &fs); err != nil || fs.Type != unix.BTRFS_SUPER_MAGIC {
		root.Close()
		return nil, fmt.Errorf("%s is not on btrfs (statfs: %v)", dir, err)
	}
	l := &layout{root: root}
	for _, d := range vmDirs {
		if err := l.readKindDir(root, d.dir, d.kind); err != nil {
			l.close()
			return nil, err
		}
	}
	if len(l.vms) == 0 {
		l.close()
		return nil, fmt.Errorf("%s has no VM directory under appvms/ or vm-templates/: not a file-reflink or btrfs-vdo pool", dir)
	}
	return l, nil
}

func (l *layout) readKindDir(root *os.File, name, kind string) error {
	d, err := openAt(root, name, unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	vms, err := listDir(d, unix.DT_DIR)
	if err != nil {
		return err
	}
	for _, vm := range vms {
		vd, err := openAt(d, vm, unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		l.vms = append(l.vms, vmInfo{name: vm, kind: kind})
		err = l.readVMDir(vd, filepath.Join(name, vm), len(l.vms)-1)
		vd.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (l *layout) readVMDir(d *os.File, rel string, vm int) error {
	names, err := listDir(d, unix.DT_REG)
	if err != nil {
		return err
	}
	// Images before their precaches and revisions: the image is what a
	// job reads first.
	slices.SortStableFunc(names, func(a, b string) int {
		ka, _ := classify(a)
		kb, _ := classify(b)
		return int(ka) - int(kb)
	})
	for _, name := range names {
		kind, vol := classify(name)
		f, err := openAt(d, name, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) {
			continue // removed or replaced since it was listed
		}
		if err != nil {
			return err
		}
		pf, err := l.newFile(f, filepath.Join(rel, name), filepath.Join(rel, vol), vm, kind)
		if err != nil {
			f.Close()
			return err
		}
		if pf.f != nil {
			l.files = append(l.files, pf)
		} else {
			f.Close()
		}
	}
	return nil
}

// newFile describes an opened file; a file that is not regular (replaced
// since it was listed) is returned without f.
func (l *layout) newFile(f *os.File, rel, volume string, vm int, kind fileKind) (poolFile, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return poolFile{}, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return poolFile{}, nil
	}
	flags, err := btrfs.Flags(f)
	if err != nil {
		return poolFile{}, err
	}
	v := slices.Index(l.volumes, volume)
	if v < 0 {
		l.volumes = append(l.volumes, volume)
		v = len(l.volumes) - 1
	}
	return poolFile{f: f, rel: rel, vm: vm, volume: v, kind: kind, noCOW: flags&btrfs.FlagNoCOW != 0}, nil
}

// listDir returns the names of d's entries of type typ, sorted.
func listDir(d *os.File, typ uint8) ([]string, error) {
	var names []string
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.Name(), err)
	}
	for _, e := range entries {
		switch {
		case typ == unix.DT_DIR && e.IsDir(), typ == unix.DT_REG && e.Type().IsRegular():
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

func openAt(d *os.File, name string, flags int) (*os.File, error) {
	return openNoAtime(int(d.Fd()), name, filepath.Join(d.Name(), name), flags)
}

// openNoAtime opens rel (relative to dirfd) read-only without following a
// symlink, with O_NOATIME so that even reading does not touch the file;
// where O_NOATIME is not permitted (not the owner, no CAP_FOWNER) it opens
// without it. path names the file in errors.
func openNoAtime(dirfd int, rel, path string, flags int) (*os.File, error) {
	flags |= unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat(dirfd, rel, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Openat(dirfd, rel, flags, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}
