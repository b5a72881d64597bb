// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// handler runs one op on its decoded arguments.
type handler func(s *Server, raw json.RawMessage) (any, error)

// handlers maps every op in api.Ops to its handler; a test keeps the two
// in step.
var handlers = map[api.Op]handler{
	api.OpHello:               handleHello,
	api.OpStatus:              handleStatus,
	api.OpPoolSetup:           handlePoolSetup,
	api.OpVolumeCreate:        volumeHandler((*volume.Store).Create),
	api.OpVolumeRemove:        volumeHandler((*volume.Store).Remove),
	api.OpVolumeVerify:        volumeHandler((*volume.Store).Verify),
	api.OpVolumeStart:         volumeHandler((*volume.Store).Start),
	api.OpVolumeStop:          volumeHandler((*volume.Store).Stop),
	api.OpVolumeInfo:          volumeHandler((*volume.Store).Info),
	api.OpVolumeExportEnd:     handleExportEnd,
	api.OpVolumeRevert:        handleRevert,
	api.OpVolumeResize:        handleResize,
	api.OpVolumeExport:        handleExport,
	api.OpVolumeImportData:    handleImportData,
	api.OpVolumeImportDataEnd: handleImportDataEnd,
	api.OpVolumeImportVolume:  handleImportVolume,
	api.OpOptimize:            handleOptimize,
	api.OpJobs:                handleJobs,
	api.OpStats:               handleStats,
}

func (s *Server) dispatch(req api.Request) (any, error) {
	h, ok := handlers[req.Op]
	if !ok {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf("unknown op %q", req.Op)}
	}
	if len(req.Args) == 0 {
		req.Args = json.RawMessage("{}")
	}
	return h(s, req.Args)
}

// decodeArgs decodes raw into T, refusing unknown fields.
func decodeArgs[T any](raw json.RawMessage) (T, error) {
	var args T
	if err := decodeStrict(raw, &args); err != nil {
		return args, &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf("malformed arguments: %v", err)}
	}
	return args, nil
}

func handleHello(s *Server, raw json.RawMessage) (any, error) {
	args, err := decodeArgs[api.HelloArgs](raw)
	if err != nil {
		return nil, err
	}
	s.Log.Debug("hello", "client", args.Client)
	return api.HelloResult{Protocol: api.ProtocolVersion, Daemon: s.Version}, nil
}

func handleStatus(s *Server, raw json.RawMessage) (any, error) {
	if _, err := decodeArgs[api.StatusArgs](raw); err != nil {
		return nil, err
	}
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
			s.Log.Warn("pool usage", "pool", p.Name, "err", err)
		}
		res.Pools = append(res.Pools, api.PoolStatus{
			Name: p.Name, DirPath: p.Volumes.Dir(),
			SizeBytes: size, UsedBytes: used, Commits: p.Commits(),
		})
	}
	return res, nil
}

func handlePoolSetup(s *Server, raw json.RawMessage) (any, error) {
	args, err := decodeArgs[api.PoolSetupArgs](raw)
	if err != nil {
		return nil, err
	}
	if err := s.Pools.CheckNesting(args.Pool.DirPath); err != nil {
		return nil, fmt.Errorf("Cannot add pool %s: %w", args.Pool.Name, err)
	}
	res, err := pool.Setup(args.Pool.DirPath, args.SetupCheck)
	if err != nil {
		return nil, fmt.Errorf("Cannot add pool %s: %w", args.Pool.Name, err)
	}
	if _, err := s.Pools.Open(args.Pool.Name, args.Pool.DirPath); err != nil {
		return nil, fmt.Errorf("Cannot add pool %s: %w", args.Pool.Name, err)
	}
	s.Log.Info("set up pool", "pool", args.Pool.Name, "dir", args.Pool.DirPath, "btrfs", res.Btrfs, "reflinks", res.Reflinks)
	return api.PoolSetupResult{Btrfs: res.Btrfs, Reflinks: res.Reflinks}, nil
}

// volumeArgs is any argument type that names a pool and a volume.
type volumeArgs interface {
	Target() (api.Pool, api.Volume)
}

// withVolume decodes T, opens its pool and calls fn with the volume spec.
func withVolume[T volumeArgs](s *Server, raw json.RawMessage, fn func(*volume.Store, volume.Spec, T) (any, error)) (any, error) {
	args, err := decodeArgs[T](raw)
	if err != nil {
		return nil, err
	}
	apiPool, apiVol := args.Target()
	p, err := s.Pools.Open(apiPool.Name, apiPool.DirPath)
	if err != nil {
		return nil, fmt.Errorf("Cannot use pool %s: %w", apiPool.Name, err)
	}
	return fn(p.Volumes, toSpec(apiVol), args)
}

func volumeHandler(op func(*volume.Store, volume.Spec) (volume.State, error)) handler {
	return func(s *Server, raw json.RawMessage) (any, error) {
		return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, _ api.VolumeArgs) (any, error) {
			return stateResult(op(st, spec))
		})
	}
}

func handleRevert(s *Server, raw json.RawMessage) (any, error) {
	return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, a api.RevertArgs) (any, error) {
		return stateResult(st.Revert(spec, a.Revision))
	})
}

func handleResize(s *Server, raw json.RawMessage) (any, error) {
	return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, a api.ResizeArgs) (any, error) {
		return stateResult(st.Resize(spec, a.Size))
	})
}

func handleExport(s *Server, raw json.RawMessage) (any, error) {
	return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, _ api.VolumeArgs) (any, error) {
		return pathResult(st.Export(spec))
	})
}

func handleExportEnd(s *Server, raw json.RawMessage) (any, error) {
	return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, _ api.ExportEndArgs) (any, error) {
		return stateResult(st.ExportEnd(spec))
	})
}

func handleImportData(s *Server, raw json.RawMessage) (any, error) {
	return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, a api.ImportDataArgs) (any, error) {
		return pathResult(st.ImportData(spec, a.Size))
	})
}

func handleImportDataEnd(s *Server, raw json.RawMessage) (any, error) {
	return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, a api.ImportDataEndArgs) (any, error) {
		return stateResult(st.ImportDataEnd(spec, a.Success))
	})
}

func handleImportVolume(s *Server, raw json.RawMessage) (any, error) {
	return withVolume(s, raw, func(st *volume.Store, spec volume.Spec, a api.ImportVolumeArgs) (any, error) {
		return stateResult(st.ImportVolume(s.stoppingContext(), spec, a.SourcePath))
	})
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

func stateResult(st volume.State, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	revs := make([]api.Revision, len(st.Revisions))
	for i, r := range st.Revisions {
		revs[i] = api.Revision{ID: r.ID, Timestamp: r.Timestamp}
	}
	return api.VolumeState{Size: st.Size, Usage: st.Usage, Dirty: st.Dirty, Revisions: revs}, nil
}

func pathResult(path string, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return api.PathResult{Path: path}, nil
}

// toAPIError gives err its stable code. The message is err's own: the
// volume layer already phrases it for the user.
func toAPIError(err error) *api.Error {
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	code := api.CodeIO
	switch {
	case errors.Is(err, pool.ErrUnknownTarget):
		code = api.CodeUnknownTarget
	case errors.Is(err, volume.ErrInvalidName), errors.Is(err, pool.ErrNested):
		code = api.CodeInvalidName
	case errors.Is(err, volume.ErrNotStopped):
		code = api.CodeNotStopped
	case errors.Is(err, volume.ErrReadOnly):
		code = api.CodeReadOnly
	case errors.Is(err, volume.ErrNotSupported), errors.Is(err, pool.ErrNoReflinks):
		code = api.CodeNotSupported
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		code = api.CodeNoSpace
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EBUSY), errors.Is(err, unix.ETXTBSY):
		code = api.CodeBusy
	case errors.Is(err, fs.ErrNotExist):
		code = api.CodeNotFound
	}
	return &api.Error{Code: code, Message: err.Error()}
}
