// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// VolumeIn names one volume of an open pool.
type VolumeIn struct {
	Pool *Pool
	VID  string
}

// VM is the name of the VM the volume belongs to.
func (v VolumeIn) VM() string { return strings.Split(v.VID, "/")[1] }

// ErrUnknownTarget means an administrator's target names no pool the
// daemon knows, nor a VM or a volume in one.
var ErrUnknownTarget = errors.New("unknown target")

// ambiguousName is the target error for a name several open pools have:
// it is then taken for no VM's name either.
type ambiguousName struct {
	name  string
	pools int
}

func (e ambiguousName) Error() string {
	return fmt.Sprintf("%v: %d pools are named %q: name the one meant by its directory", ErrUnknownTarget, e.pools, e.name)
}

func (e ambiguousName) Unwrap() error { return ErrUnknownTarget }

// Resolve turns an administrator's target into volumes: "" (every open
// pool), a known pool's name or directory, "POOL:VID", or a VM's name (its
// volumes in every open pool). It never adopts a directory as a new pool:
// the pools it knows are those set up through the daemon or used by
// qubesd, remembered across restarts (see Config.StateDir). A directory
// merely laid out as a pool (a copy, a pool qvm-pool removed) is refused.
func (r *Registry) Resolve(target string) ([]VolumeIn, error) {
	if poolPart, vid, ok := strings.Cut(target, ":"); ok {
		return r.resolveVolume(poolPart, vid)
	}
	if target == "" {
		return volumesOf(r.List(), "")
	}
	p, err := r.known(target)
	switch {
	case err == nil:
		return volumesOf([]*Pool{p}, "")
	case filepath.IsAbs(target), errors.As(err, new(ambiguousName)):
		return nil, err
	}
	vols, err := volumesOf(r.List(), target)
	if err == nil && len(vols) == 0 {
		err = r.unknown("%q is neither a pool nor a VM with volumes in one", target)
	}
	return vols, err
}

func (r *Registry) resolveVolume(poolPart, vid string) ([]VolumeIn, error) {
	p, err := r.known(poolPart)
	if err != nil {
		return nil, err
	}
	if err := volume.ValidateVID(vid); err != nil {
		return nil, err
	}
	vids, err := p.Volumes.List()
	if err != nil {
		return nil, err
	}
	if !slices.Contains(vids, vid) {
		return nil, fmt.Errorf("%w: pool %s has no volume %s", ErrUnknownTarget, p.Name, vid)
	}
	return []VolumeIn{{Pool: p, VID: vid}}, nil
}

// known returns the open pool named name, or whose directory name is.
func (r *Registry) known(name string) (*Pool, error) {
	if filepath.IsAbs(name) {
		dir := filepath.Clean(name)
		if p := r.openAt(dir); p != nil {
			return p, nil
		}
		return nil, r.unknown("%s is not a pool directory", dir)
	}
	var named []*Pool
	for _, p := range r.List() {
		if p.Name == name {
			named = append(named, p)
		}
	}
	switch len(named) {
	case 0:
		return nil, r.unknown("no pool is named %q", name)
	case 1:
		return named[0], nil
	}
	return nil, ambiguousName{name: name, pools: len(named)}
}

func (r *Registry) openAt(dir string) *Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pools[dir]; p != nil {
		return r.current(p)
	}
	return nil
}

// servedBefore reports whether dir holds a pool's layout and the daemon's
// state directory: a pool some daemon served, which this one may not know
// (served before it remembered pools, or its list was lost).
func servedBefore(dir string) bool {
	for _, sub := range append([]string{volume.StateDir}, volume.TopDirs...) {
		info, err := os.Lstat(filepath.Join(dir, sub))
		if err != nil || !info.IsDir() {
			return false
		}
	}
	return true
}

// unknown is an ErrUnknownTarget that lists the pools the daemon knows.
func (r *Registry) unknown(format string, args ...any) error {
	var known []string
	for _, p := range r.List() {
		known = append(known, fmt.Sprintf("%s (%s)", p.Name, p.Volumes.Dir()))
	}
	list := "no pool is known yet: qubesd opens each pool as it uses it, and qvm-pool add sets one up"
	if len(known) > 0 {
		list = "known pools: " + strings.Join(known, ", ")
	}
	return fmt.Errorf("%w: %s; %s", ErrUnknownTarget, fmt.Sprintf(format, args...), list)
}

// volumesOf lists the volumes of pools, only the VM's when vm is set, in
// the order a pass over them should take: see passOrder.
func volumesOf(pools []*Pool, vm string) ([]VolumeIn, error) {
	var out []VolumeIn
	for _, p := range pools {
		vids, err := p.Volumes.List()
		if err != nil {
			return nil, err
		}
		for _, vid := range vids {
			v := VolumeIn{Pool: p, VID: vid}
			if vm == "" || v.VM() == vm {
				out = append(out, v)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b VolumeIn) int { return cmp.Compare(passRank(a.VID), passRank(b.VID)) })
	return out, nil
}

// passOrder is the order of a pass over many volumes, by vid prefix and
// across pools: templates first, so that the AppVMs' copies of template
// data find the templates' blocks in the dedup index; then AppVMs; then
// anything else.
var passOrder = []string{"vm-templates/", "appvms/"}

func passRank(vid string) int {
	for i, prefix := range passOrder {
		if strings.HasPrefix(vid, prefix) {
			return i
		}
	}
	return len(passOrder)
}
