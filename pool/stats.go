// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"fmt"
	"sort"

	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Usage is compsize's view of a set of files, plus what the set shares
// with files outside it.
type Usage struct {
	Files                                         uint64
	DiskBytes, UncompressedBytes, ReferencedBytes uint64
	SharedBytes, ExclusiveBytes                   uint64
	ByType                                        []TypeUsage
}

// TypeUsage is one compression type's part of a Usage.
type TypeUsage struct {
	Type                                          string
	DiskBytes, UncompressedBytes, ReferencedBytes uint64
}

// MeasuredSet is the usage of a named set of files.
type MeasuredSet struct {
	Name  string
	Usage Usage
}

// Sets are the measurements of some volumes one by one, grouped by VM and
// grouped by pool.
type Sets struct {
	Volumes, VMs, Pools []MeasuredSet
}

// MeasureSets measures each volume's files, each VM's and each pool's,
// each as one set so that extents shared inside a set count once.
func MeasureSets(vols []VolumeIn) (Sets, error) {
	var sets Sets
	byVM := map[string][]poolFile{}
	byPool := map[string][]poolFile{}
	for _, v := range vols {
		vfiles, err := v.Pool.Volumes.Files(v.VID)
		if err != nil {
			return Sets{}, err
		}
		if len(vfiles) == 0 {
			continue
		}
		files := make([]poolFile, len(vfiles))
		for i, f := range vfiles {
			files[i] = poolFile{v.Pool.Volumes, f}
		}
		m, err := measure(v.Pool.Name+":"+v.VID, files)
		if err != nil {
			return Sets{}, err
		}
		sets.Volumes = append(sets.Volumes, m)
		byVM[v.VM()] = append(byVM[v.VM()], files...)
		byPool[v.Pool.Name] = append(byPool[v.Pool.Name], files...)
	}
	var err error
	if sets.VMs, err = measureGroups(byVM); err != nil {
		return Sets{}, err
	}
	if sets.Pools, err = measureGroups(byPool); err != nil {
		return Sets{}, err
	}
	return sets, nil
}

// poolFile is a volume's file and the store that opens it.
type poolFile struct {
	store *volume.Store
	file  volume.File
}

func measureGroups(groups map[string][]poolFile) ([]MeasuredSet, error) {
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]MeasuredSet, 0, len(names))
	for _, name := range names {
		m, err := measure(name, groups[name])
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func measure(name string, files []poolFile) (MeasuredSet, error) {
	r, err := measureFiles(files)
	if err != nil {
		return MeasuredSet{}, err
	}
	u := Usage{
		Files: r.Files, DiskBytes: r.Total.DiskBytes, UncompressedBytes: r.Total.UncompressedBytes,
		ReferencedBytes: r.Total.ReferencedBytes, SharedBytes: r.SharedDiskBytes, ExclusiveBytes: r.ExclusiveDiskBytes,
	}
	for _, row := range r.ByType {
		u.ByType = append(u.ByType, TypeUsage{
			Type: row.Type, DiskBytes: row.DiskBytes, UncompressedBytes: row.UncompressedBytes, ReferencedBytes: row.ReferencedBytes,
		})
	}
	return MeasuredSet{Name: name, Usage: u}, nil
}

// measureFiles measures files as one set, each opened beneath its pool
// directory and added in turn.
func measureFiles(files []poolFile) (usage.Report, error) {
	set := usage.NewTotalsWithSharing()
	for _, pf := range files {
		f, err := pf.store.Open(pf.file)
		if err != nil {
			return usage.Report{}, fmt.Errorf("measure: %w", err)
		}
		err = set.Add(f)
		f.Close()
		if err != nil {
			return usage.Report{}, err
		}
	}
	return set.Report(), nil
}
