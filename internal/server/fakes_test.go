// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"context"
	"fmt"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Fakes of the interfaces of backend.go: they answer what a test sets and
// record what the handlers asked of them, one line per call.

type fakeRegistry struct {
	store   *fakeStore
	setup   setupResult
	pools   []OpenPool
	targets []TargetVolume
	sets    measuredSets
	calls   []string
}

func (f *fakeRegistry) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeRegistry) CheckNesting(dir string) error {
	f.record("CheckNesting %s", dir)
	return nil
}

func (f *fakeRegistry) Setup(dir string, check bool) (setupResult, error) {
	f.record("Setup %s check=%t", dir, check)
	return f.setup, nil
}

func (f *fakeRegistry) Open(name, dir string) (VolumeStore, error) {
	f.record("Open %s %s", name, dir)
	return f.store, nil
}

func (f *fakeRegistry) List() []OpenPool {
	f.record("List")
	return f.pools
}

func (f *fakeRegistry) Resolve(target string) ([]TargetVolume, error) {
	f.record("Resolve %s", target)
	return f.targets, nil
}

func (f *fakeRegistry) Measure(target string) (measuredSets, error) {
	f.record("Measure %s", target)
	return f.sets, nil
}

type fakePool struct {
	name, dir   string
	size, used  int64
	commitCount uint64
}

func (p fakePool) Name() string                         { return p.name }
func (p fakePool) Dir() string                          { return p.dir }
func (p fakePool) Usage() (size, used int64, err error) { return p.size, p.used, nil }
func (p fakePool) Commits() uint64                      { return p.commitCount }

// fakeTarget is a volume of an optimize target; Optimize records itself
// in calls.
type fakeTarget struct {
	ref   api.VolumeRef
	id    uint64
	err   error
	calls *[]string
}

func (v fakeTarget) Ref() api.VolumeRef { return v.ref }

func (v fakeTarget) Optimize(full, cold bool) (uint64, error) {
	*v.calls = append(*v.calls, fmt.Sprintf("Optimize %s full=%t cold=%t", v.ref.VID, full, cold))
	return v.id, v.err
}

// storeCall is one call of a VolumeStore method: the spec and the
// argument beyond it, if any.
type storeCall struct {
	method string
	spec   volume.Spec
	arg    any
}

// fakeStore answers every operation with state, or path, or err.
type fakeStore struct {
	state volume.State
	path  string
	err   error
	calls []storeCall
}

func (f *fakeStore) answer(method string, spec volume.Spec, arg any) (volume.State, error) {
	f.calls = append(f.calls, storeCall{method, spec, arg})
	return f.state, f.err
}

func (f *fakeStore) answerPath(method string, spec volume.Spec, arg any) (string, error) {
	f.calls = append(f.calls, storeCall{method, spec, arg})
	return f.path, f.err
}

func (f *fakeStore) Create(s volume.Spec) (volume.State, error) { return f.answer("Create", s, nil) }
func (f *fakeStore) Remove(s volume.Spec) (volume.State, error) { return f.answer("Remove", s, nil) }
func (f *fakeStore) Verify(s volume.Spec) (volume.State, error) { return f.answer("Verify", s, nil) }
func (f *fakeStore) Start(s volume.Spec) (volume.State, error)  { return f.answer("Start", s, nil) }
func (f *fakeStore) Stop(s volume.Spec) (volume.State, error)   { return f.answer("Stop", s, nil) }
func (f *fakeStore) Info(s volume.Spec) (volume.State, error)   { return f.answer("Info", s, nil) }
func (f *fakeStore) Export(s volume.Spec) (string, error)       { return f.answerPath("Export", s, nil) }

func (f *fakeStore) ExportEnd(s volume.Spec) (volume.State, error) {
	return f.answer("ExportEnd", s, nil)
}

func (f *fakeStore) Revert(s volume.Spec, id string) (volume.State, error) {
	return f.answer("Revert", s, id)
}

func (f *fakeStore) Resize(s volume.Spec, size int64) (volume.State, error) {
	return f.answer("Resize", s, size)
}

func (f *fakeStore) ImportData(s volume.Spec, size int64) (string, error) {
	return f.answerPath("ImportData", s, size)
}

func (f *fakeStore) ImportDataEnd(s volume.Spec, success bool) (volume.State, error) {
	return f.answer("ImportDataEnd", s, success)
}

func (f *fakeStore) ImportVolume(_ context.Context, s volume.Spec, source string) (volume.State, error) {
	return f.answer("ImportVolume", s, source)
}

type fakeScheduler struct {
	paused   bool
	jobs     []jobStatus
	recent   []jobDone
	counters jobCounters
}

func (f *fakeScheduler) Paused() bool          { return f.paused }
func (f *fakeScheduler) Jobs() []jobStatus     { return f.jobs }
func (f *fakeScheduler) Recent() []jobDone     { return f.recent }
func (f *fakeScheduler) Counters() jobCounters { return f.counters }
