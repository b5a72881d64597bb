// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"context"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// What the handlers need of the rest of the daemon, and no more: tests
// run every handler against fakes of these. pools.go fits package pool to
// them; the types named in lower case are pool's, aliased there.

// Registry is what the handlers need of the pool registry.
type Registry interface {
	// CheckNesting refuses dir if it lies inside a pool or contains one.
	CheckNesting(dir string) error
	// Setup creates the pool directory dir and its layout and, when check
	// is set, refuses a filesystem without reflinks.
	Setup(dir string, check bool) (setupResult, error)
	// Open returns the volumes of the pool at dir, opening the pool on
	// first use.
	Open(name, dir string) (VolumeStore, error)
	// List returns the open pools.
	List() []OpenPool
	// Resolve turns an optimize target into the volumes it names.
	Resolve(target string) ([]TargetVolume, error)
	// Measure measures the volumes a stats target names, one by one, by
	// VM and by pool.
	Measure(target string) (measuredSets, error)
}

// OpenPool is what status reports of one open pool.
type OpenPool interface {
	Name() string
	Dir() string
	// Usage is the filesystem's size and used bytes.
	Usage() (size, used int64, err error)
	// Commits counts the commits that landed in the pool.
	Commits() uint64
}

// TargetVolume is one volume an optimize target names.
type TargetVolume interface {
	Ref() api.VolumeRef
	// Optimize queues a pass over the volume (a full one, or a cold
	// one) and returns its job's id.
	Optimize(full, cold bool) (uint64, error)
}

// VolumeStore is what the handlers need of one pool's volumes; every
// method is one volume operation of package volume.
type VolumeStore interface {
	Create(volume.Spec) (volume.State, error)
	Remove(volume.Spec) (volume.State, error)
	Verify(volume.Spec) (volume.State, error)
	Start(volume.Spec) (volume.State, error)
	Stop(volume.Spec) (volume.State, error)
	Info(volume.Spec) (volume.State, error)
	Revert(spec volume.Spec, id string) (volume.State, error)
	Resize(spec volume.Spec, size int64) (volume.State, error)
	Export(volume.Spec) (string, error)
	ExportEnd(volume.Spec) (volume.State, error)
	ImportData(spec volume.Spec, size int64) (string, error)
	ImportDataEnd(spec volume.Spec, success bool) (volume.State, error)
	ImportVolume(ctx context.Context, spec volume.Spec, source string) (volume.State, error)
}

// Scheduler is what the handlers need of the optimizer's job scheduler.
type Scheduler interface {
	Paused() bool
	// Jobs are the queued and running jobs.
	Jobs() []jobStatus
	// Recent are the jobs finished last.
	Recent() []jobDone
	// Counters are the totals since the daemon started.
	Counters() jobCounters
}
