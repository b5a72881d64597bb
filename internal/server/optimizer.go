// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

var errNoOptimizer = &api.Error{Code: api.CodeNotSupported, Message: "the optimizer is not running in this daemon"}

func handleOptimize(s *Server, args api.OptimizeArgs) (api.OptimizeResult, error) {
	if s.Jobs == nil {
		return api.OptimizeResult{}, errNoOptimizer
	}
	if args.Full && args.Cold {
		return api.OptimizeResult{}, &api.Error{Code: api.CodeBadRequest, Message: "a pass is full or cold, not both"}
	}
	vols, err := s.Pools.Resolve(args.Target)
	if err != nil {
		return api.OptimizeResult{}, err
	}
	res := api.OptimizeResult{Queued: []api.QueuedJob{}}
	var errs []error
	for _, v := range vols {
		ref := v.Ref()
		id, err := v.Optimize(args.Full, args.Cold)
		if errors.Is(err, errNotOptimizable) && !strings.Contains(args.Target, ":") {
			// A running VM's volumes among many: their commits queue jobs.
			s.Log.Info("not optimizing", "pool", ref.Pool, "vid", ref.VID, "reason", err)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("Cannot optimize %s:%s: %w", ref.Pool, ref.VID, err))
			continue
		}
		res.Queued = append(res.Queued, api.QueuedJob{VolumeRef: ref, ID: id})
	}
	s.Log.Info("queued optimization", "target", args.Target, "full", args.Full, "cold", args.Cold, "volumes", len(res.Queued))
	return res, errors.Join(errs...)
}

func handleJobs(s *Server, _ api.JobsArgs) (api.JobsResult, error) {
	if s.Jobs == nil {
		return api.JobsResult{}, errNoOptimizer
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
			BytesExamined:   d.Result.Counters.Examined(),
			BytesCompressed: d.Result.Counters.Compressed(),
			BytesSaved:      d.Result.Saved(),
			SkippedShared:   d.Result.Counters.SkippedShared(),
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

// usageRow converts a measured usage into its wire form.
func usageRow(name string, u usage) api.UsageRow {
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

func handleStats(s *Server, args api.StatsArgs) (api.StatsResult, error) {
	sets, err := s.Pools.Measure(args.Target)
	if err != nil {
		return api.StatsResult{}, err
	}
	res := api.StatsResult{Volumes: []api.UsageRow{}, VMs: []api.UsageRow{}, Pools: []api.UsageRow{}}
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
