package pool

import (
	"cmp"
	"fmt"
	"io/fs"
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

// Resolve turns an administrator's target into volumes: "" (every open
// pool), a pool's name or directory, "POOL:VID", or a VM's name (its
// volumes in every open pool). A pool directory not yet open is opened.
func (r *Registry) Resolve(target string) ([]VolumeIn, error) {
	if poolPart, vid, ok := strings.Cut(target, ":"); ok {
		p, err := r.find(poolPart)
		if err != nil {
			return nil, err
		}
		if err := volume.ValidateVID(vid); err != nil {
			return nil, err
		}
		return []VolumeIn{{Pool: p, VID: vid}}, nil
	}
	var pools []*Pool
	if target == "" {
		pools = r.List()
	} else if p, err := r.find(target); err == nil {
		pools = []*Pool{p}
	}
	if len(pools) > 0 || target == "" {
		return volumesOf(pools, "")
	}
	vols, err := volumesOf(r.List(), target)
	if err == nil && len(vols) == 0 {
		err = fmt.Errorf("%q is neither a pool the daemon knows, nor a pool directory, nor a VM with volumes in one: %w", target, fs.ErrNotExist)
	}
	return vols, err
}

// find returns the pool named name, or opens the directory name.
func (r *Registry) find(name string) (*Pool, error) {
	if filepath.IsAbs(name) {
		return r.Open(filepath.Base(name), filepath.Clean(name))
	}
	for _, p := range r.List() {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no pool named %q is known to the daemon (use its directory): %w", name, fs.ErrNotExist)
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
