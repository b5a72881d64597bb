// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"context"
	"fmt"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

func handleHello(s *Server, args api.HelloArgs) (api.HelloResult, error) {
	s.Log.Debug("hello", "client", args.Client)
	return api.HelloResult{Protocol: api.ProtocolVersion, Daemon: s.Version}, nil
}

func handleStatus(s *Server, _ api.StatusArgs) (api.StatusResult, error) {
	res := api.StatusResult{
		Protocol:      api.ProtocolVersion,
		Daemon:        s.Version,
		UptimeSeconds: int64(time.Since(s.started).Seconds()),
		Requests:      s.requests.Load(),
		Pools:         []api.PoolStatus{},
	}
	for _, p := range s.Pools.List() {
		size, used, err := p.Usage()
		if err != nil {
			s.Log.Warn("pool usage", "pool", p.Name(), "err", err)
		}
		res.Pools = append(res.Pools, api.PoolStatus{
			Name: p.Name(), DirPath: p.Dir(),
			SizeBytes: size, UsedBytes: used, Commits: p.Commits(),
		})
	}
	return res, nil
}

func handlePoolSetup(s *Server, args api.PoolSetupArgs) (api.PoolSetupResult, error) {
	fail := func(err error) (api.PoolSetupResult, error) {
		return api.PoolSetupResult{}, fmt.Errorf("Cannot add pool %s: %w", args.Pool.Name, err)
	}
	if err := s.Pools.CheckNesting(args.Pool.DirPath); err != nil {
		return fail(err)
	}
	res, err := s.Pools.Setup(args.Pool.DirPath, args.SetupCheck)
	if err != nil {
		return fail(err)
	}
	if _, err := s.Pools.Open(args.Pool.Name, args.Pool.DirPath); err != nil {
		return fail(err)
	}
	s.Log.Info("set up pool", "pool", args.Pool.Name, "dir", args.Pool.DirPath, "btrfs", res.Btrfs, "reflinks", res.Reflinks)
	return api.PoolSetupResult{Btrfs: res.Btrfs, Reflinks: res.Reflinks}, nil
}

// volumeArgs is any argument type that names a pool and a volume.
type volumeArgs interface {
	Target() (api.Pool, api.Volume)
}

// openVolume opens the pool args names and returns its volumes and the
// spec of the volume args names.
func (s *Server) openVolume(args volumeArgs) (VolumeStore, volume.Spec, error) {
	apiPool, apiVol := args.Target()
	store, err := s.Pools.Open(apiPool.Name, apiPool.DirPath)
	if err != nil {
		return nil, volume.Spec{}, fmt.Errorf("Cannot use pool %s: %w", apiPool.Name, err)
	}
	return store, toSpec(apiVol), nil
}

// stateOp is the handler of a volume operation that needs nothing but the
// volume.
func stateOp(op func(VolumeStore, volume.Spec) (volume.State, error)) func(*Server, api.VolumeArgs) (api.VolumeState, error) {
	return func(s *Server, args api.VolumeArgs) (api.VolumeState, error) {
		store, spec, err := s.openVolume(args)
		if err != nil {
			return api.VolumeState{}, err
		}
		return stateResult(op(store, spec))
	}
}

func handleRevert(s *Server, args api.RevertArgs) (api.VolumeState, error) {
	store, spec, err := s.openVolume(args)
	if err != nil {
		return api.VolumeState{}, err
	}
	return stateResult(store.Revert(spec, args.Revision))
}

func handleResize(s *Server, args api.ResizeArgs) (api.VolumeState, error) {
	store, spec, err := s.openVolume(args)
	if err != nil {
		return api.VolumeState{}, err
	}
	return stateResult(store.Resize(spec, args.Size))
}

func handleExport(s *Server, args api.VolumeArgs) (api.PathResult, error) {
	store, spec, err := s.openVolume(args)
	if err != nil {
		return api.PathResult{}, err
	}
	return pathResult(store.Export(spec))
}

func handleExportEnd(s *Server, args api.ExportEndArgs) (api.VolumeState, error) {
	store, spec, err := s.openVolume(args)
	if err != nil {
		return api.VolumeState{}, err
	}
	return stateResult(store.ExportEnd(spec))
}

func handleImportData(s *Server, args api.ImportDataArgs) (api.PathResult, error) {
	store, spec, err := s.openVolume(args)
	if err != nil {
		return api.PathResult{}, err
	}
	return pathResult(store.ImportData(spec, args.Size))
}

func handleImportDataEnd(s *Server, args api.ImportDataEndArgs) (api.VolumeState, error) {
	store, spec, err := s.openVolume(args)
	if err != nil {
		return api.VolumeState{}, err
	}
	return stateResult(store.ImportDataEnd(spec, args.Success))
}

func handleImportVolume(s *Server, args api.ImportVolumeArgs) (api.VolumeState, error) {
	store, spec, err := s.openVolume(args)
	if err != nil {
		return api.VolumeState{}, err
	}
	return stateResult(store.ImportVolume(s.stoppingContext(), spec, args.SourcePath))
}

// stoppingContext is done when the daemon stops; Background before Serve.
func (s *Server) stoppingContext() context.Context {
	if s.stopping == nil {
		return context.Background()
	}
	return s.stopping
}

func toSpec(v api.Volume) volume.Spec {
	return volume.Spec{
		VID: v.VID, RW: v.RW, SaveOnStop: v.SaveOnStop, SnapOnStart: v.SnapOnStart,
		RevisionsToKeep: v.RevisionsToKeep, Size: v.Size, Source: v.Source,
	}
}

func stateResult(st volume.State, err error) (api.VolumeState, error) {
	if err != nil {
		return api.VolumeState{}, err
	}
	revs := make([]api.Revision, len(st.Revisions))
	for i, r := range st.Revisions {
		revs[i] = api.Revision{ID: r.ID, Timestamp: r.Timestamp}
	}
	return api.VolumeState{Size: st.Size, Usage: st.Usage, Dirty: st.Dirty, Revisions: revs}, nil
}

func pathResult(path string, err error) (api.PathResult, error) {
	if err != nil {
		return api.PathResult{}, err
	}
	return api.PathResult{Path: path}, nil
}
