// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

var errNoOptimizer = &api.Error{Code: api.CodeNotSupported, Message: "the optimizer is not running in this daemon"}

func handleOptimize(s *Server, raw json.RawMessage) (any, error) {
	args, err := decodeArgs[api.OptimizeArgs](raw)
	if err != nil {
		return nil, err
	}
	if s.Jobs == nil {
		return nil, errNoOptimizer
	}
	vols, err := s.Pools.Resolve(args.Target)
	if err != nil {
		return nil, err
	}
	res := api.OptimizeResult{Queued: []api.QueuedJob{}}
	var errs []error
	for _, v := range vols {
		id, err := v.Pool.Optimizer.Optimize(v.VID, args.Full)
		if errors.Is(err, optimizer.ErrNotOptimizable) && !strings.Contains(args.Target, ":") {
			// A running VM's volumes among many: their commits queue jobs.
			s.Log.Info("not optimizing", "pool", v.Pool.Name, "vid", v.VID, "reason", err)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("Cannot optimize %s:%s: %w", v.Pool.Name, v.VID, err))
			continue
		}
		res.Queued = append(res.Queued, api.QueuedJob{VolumeRef: volumeRef(v.Pool.Name, v.Pool.Volumes.Dir(), v.VID), ID: id})
	}
	s.Log.Info("queued optimization", "target", args.Target, "full", args.Full, "volumes", len(res.Queued))
	return res, errors.Join(errs...)
}

func handleJobs(s *Server, raw json.RawMessage) (any, error) {
	if _, err := decodeArgs[api.JobsArgs](raw); err != nil {
		return nil, err
	}
	if s.Jobs == nil {
		return nil, errNoOptimizer
	}
	res := api.JobsResult{Paused: s.Jobs.Paused(), Jobs: []api.JobInfo{}, Recent: []api.JobOutcome{}}
	for _, j := range s.Jobs.Jobs() {
		res.Jobs = append(res.Jobs, api.JobInfo{
			VolumeRef: volumeRef(j.Pool, j.Dir, j.VID), ID: j.ID, State: j.State,
			DoneBytes: j.DoneBytes, TotalBytes: j.Total, Queued: j.Queued.Format(time.RFC3339),
		})
	}
	for _, d := range s.Jobs.Recent() {
		out := api.JobOutcome{
			VolumeRef: volumeRef(d.Pool, d.Dir, d.VID), ID: d.ID, Finished: d.Finished.Format(time.RFC3339),
			BytesExamined:   uint64(d.Result.Counters.Get(optimizer.CountCompressBytesExamined)),
			BytesCompressed: uint64(d.Result.Counters.Get(optimizer.CountCompressBytesCompressed)),
			BytesSaved:      d.Result.Saved(),
			SkippedShared:   uint64(d.Result.Counters.Get(optimizer.CountCompressBytesSkippedShared)),
		}
		if d.Err != nil {
			out.Error = d.Err.Error()
		}
		res.Recent = append(res.Recent, out)
	}
	res.Counters = s.Jobs.Counters().Map()
	return res, nil
}

func volumeRef(name, dir, vid string) api.VolumeRef {
	return api.VolumeRef{Pool: name, DirPath: dir, VID: vid}
}

// usageRow converts a pool.Usage into its wire form.
func usageRow(name string, u pool.Usage) api.UsageRow {
	row := api.UsageRow{
		Name: name, Files: u.Files, DiskBytes: u.DiskBytes, UncompressedBytes: u.UncompressedBytes,
		ReferencedBytes: u.ReferencedBytes, SharedBytes: u.SharedBytes, ExclusiveBytes: u.ExclusiveBytes,
		ByType: []api.TypeUsage{},
	}
	for _, t := range u.ByType {
		row.ByType = append(row.ByType, api.TypeUsage{
			Type: t.Type, DiskBytes: t.DiskBytes, UncompressedBytes: t.UncompressedBytes, ReferencedBytes: t.ReferencedBytes,
		})
	}
	return row
}

func handleStats(s *Server, raw json.RawMessage) (any, error) {
	args, err := decodeArgs[api.StatsArgs](raw)
	if err != nil {
		return nil, err
	}
	vols, err := s.Pools.Resolve(args.Target)
	if err != nil {
		return nil, err
	}
	res := api.StatsResult{Volumes: []api.UsageRow{}, VMs: []api.UsageRow{}, Pools: []api.UsageRow{}}
	sets, err := pool.MeasureSets(vols)
	if err != nil {
		return nil, err
	}
	for _, set := range sets.Volumes {
		res.Volumes = append(res.Volumes, usageRow(set.Name, set.Usage))
	}
	for _, set := range sets.VMs {
		res.VMs = append(res.VMs, usageRow(set.Name, set.Usage))
	}
	for _, set := range sets.Pools {
		res.Pools = append(res.Pools, usageRow(set.Name, set.Usage))
	}
	return res, nil
}
