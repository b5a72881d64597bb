// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// The one file of the server that knows packages pool and optimizer: the
// types the interfaces of backend.go speak of, the errors the server tells
// apart, and the registry fitted to Registry. An *optimizer.Scheduler is a
// Scheduler as it is.

type (
	setupResult  = pool.SetupResult
	measuredSets = pool.Sets
	usage        = pool.Usage
	jobStatus    = optimizer.JobStatus
	jobDone      = optimizer.JobDone
	jobCounters  = optimizer.Counters
)

var (
	errUnknownTarget  = pool.ErrUnknownTarget
	errNestedPool     = pool.ErrNested
	errNoReflinks     = pool.ErrNoReflinks
	errNotOptimizable = optimizer.ErrNotOptimizable
)

// PoolRegistry fits the pool registry r to Registry.
func PoolRegistry(r *pool.Registry) Registry { return registry{r} }

type registry struct{ r *pool.Registry }

func (g registry) CheckNesting(dir string) error { return g.r.CheckNesting(dir) }

func (registry) Setup(dir string, check bool) (setupResult, error) { return pool.Setup(dir, check) }

func (g registry) Open(name, dir string) (VolumeStore, error) {
	p, err := g.r.Open(name, dir)
	if err != nil {
		return nil, err
	}
	return p.Volumes, nil
}

func (g registry) List() []OpenPool {
	var pools []OpenPool
	for _, p := range g.r.List() {
		pools = append(pools, openPool{p})
	}
	return pools
}

func (g registry) Resolve(target string) ([]TargetVolume, error) {
	vols, err := g.r.Resolve(target)
	if err != nil {
		return nil, err
	}
	targets := make([]TargetVolume, len(vols))
	for i, v := range vols {
		targets[i] = targetVolume(v)
	}
	return targets, nil
}

func (g registry) Measure(target string) (measuredSets, error) {
	vols, err := g.r.Resolve(target)
	if err != nil {
		return measuredSets{}, err
	}
	return pool.MeasureSets(vols)
}

type openPool struct{ p *pool.Pool }

func (o openPool) Name() string                         { return o.p.Name }
func (o openPool) Dir() string                          { return o.p.Volumes.Dir() }
func (o openPool) Usage() (size, used int64, err error) { return o.p.Usage() }
func (o openPool) Commits() uint64                      { return o.p.Commits() }

type targetVolume pool.VolumeIn

func (v targetVolume) Ref() api.VolumeRef {
	return api.VolumeRef{Pool: v.Pool.Name, DirPath: v.Pool.Volumes.Dir(), VID: v.VID}
}

func (v targetVolume) Optimize(full, cold bool) (uint64, error) {
	if cold {
		return v.Pool.Optimizer.OptimizeCold(v.VID)
	}
	return v.Pool.Optimizer.Optimize(v.VID, full)
}
