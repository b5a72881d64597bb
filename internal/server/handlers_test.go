// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// goldenOpsDir holds a request and a response for every op, shared with the
// Python driver's tests.
var goldenOpsDir = filepath.Join("..", "..", "api", "testdata", "ops")

const (
	goldenPool    = "vdo"
	goldenDirPath = "/var/lib/qubes-vdo"
)

// The volumes of the golden requests, as the handlers must hand them on.
var (
	workPrivate = volume.Spec{VID: "appvms/work/private", RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 2 << 30}
	workRoot    = volume.Spec{VID: "appvms/work/root", RW: true, SnapOnStart: true, RevisionsToKeep: 1, Size: 10 << 30,
		Source: "vm-templates/fedora/root"}
)

// goldenCase is what the volume store answers for an op and what the
// handler must have asked of the registry and of the store.
type goldenCase struct {
	store     fakeStore
	wantCalls []string
	wantStore []storeCall
}

func goldenCases() map[api.Op]goldenCase {
	rev1 := []volume.Revision{{ID: "1", Timestamp: "2026-11-20T09:15:02"}}
	rev2 := []volume.Revision{{ID: "2", Timestamp: "2026-11-25T18:40:11"}}
	none := volume.State{Size: 2 << 30}
	committed := volume.State{Size: 2 << 30, Usage: 1 << 20, Revisions: rev1}
	newer := volume.State{Size: 2 << 30, Usage: 1 << 20, Revisions: rev2}
	open := []string{"Open " + goldenPool + " " + goldenDirPath}
	volumeCase := func(st volume.State, method string, arg any) goldenCase {
		return goldenCase{fakeStore{state: st}, open, []storeCall{{method, workPrivate, arg}}}
	}
	pathCase := func(path, method string, arg any) goldenCase {
		return goldenCase{fakeStore{path: path}, open, []storeCall{{method, workPrivate, arg}}}
	}
	return map[api.Op]goldenCase{
		api.OpHello:               {},
		api.OpStatus:              {wantCalls: []string{"List"}},
		api.OpPoolSetup:           {wantCalls: []string{"CheckNesting " + goldenDirPath, "Setup " + goldenDirPath + " check=true", open[0]}},
		api.OpVolumeCreate:        volumeCase(none, "Create", nil),
		api.OpVolumeRemove:        volumeCase(none, "Remove", nil),
		api.OpVolumeVerify:        {fakeStore{state: volume.State{Size: 10 << 30}}, open, []storeCall{{"Verify", workRoot, nil}}},
		api.OpVolumeStart:         volumeCase(volume.State{Size: 2 << 30, Usage: 1 << 20, Dirty: true, Revisions: rev1}, "Start", nil),
		api.OpVolumeStop:          volumeCase(newer, "Stop", nil),
		api.OpVolumeInfo:          volumeCase(committed, "Info", nil),
		api.OpVolumeRevert:        volumeCase(newer, "Revert", "1"),
		api.OpVolumeResize:        volumeCase(volume.State{Size: 4 << 30, Usage: 1 << 20, Revisions: rev1}, "Resize", int64(4<<30)),
		api.OpVolumeExport:        pathCase(goldenDirPath+"/appvms/work/private.img", "Export", nil),
		api.OpVolumeExportEnd:     volumeCase(committed, "ExportEnd", nil),
		api.OpVolumeImportData:    pathCase(goldenDirPath+"/appvms/work/private-import.img", "ImportData", int64(2<<30)),
		api.OpVolumeImportDataEnd: volumeCase(committed, "ImportDataEnd", true),
		api.OpVolumeImportVolume:  volumeCase(committed, "ImportVolume", goldenDirPath+"/appvms/personal/private.img"),
		api.OpOptimize: {wantCalls: []string{"Resolve vdo", "Optimize vm-templates/fedora/root full=true cold=false",
			"Optimize appvms/work/private full=true cold=false", "Optimize appvms/personal/private full=true cold=false"}},
		api.OpJobs:  {},
		api.OpStats: {wantCalls: []string{"Measure work"}},
	}
}

// goldenServer serves from fakes that hold what the golden responses
// show; store answers the volume operations.
func goldenServer(store *fakeStore) (*Server, *fakeRegistry) {
	reg := &fakeRegistry{store: store, setup: setupResult{Btrfs: true, Reflinks: true}, sets: goldenSets()}
	reg.pools = []OpenPool{fakePool{goldenPool, goldenDirPath, 500 << 30, 20 << 30, 7}}
	ref := func(vid string) api.VolumeRef {
		return api.VolumeRef{Pool: goldenPool, DirPath: goldenDirPath, VID: vid}
	}
	reg.targets = []TargetVolume{
		fakeTarget{ref: ref("vm-templates/fedora/root"), id: 7, calls: &reg.calls},
		fakeTarget{ref: ref("appvms/work/private"), id: 8, calls: &reg.calls},
		// Running: left to its next commit, and not reported.
		fakeTarget{ref: ref("appvms/personal/private"), err: fmt.Errorf("%w: it runs", errNotOptimizable), calls: &reg.calls},
	}
	srv := &Server{Pools: reg, Jobs: goldenJobs(), Version: "0.1.0", Log: logtest.Discard()}
	srv.started = time.Now().Add(-time.Hour)
	srv.requests.Store(42)
	return srv, reg
}

func goldenJobs() *fakeScheduler {
	f := &fakeScheduler{}
	f.jobs = []jobStatus{{ID: 8, Pool: goldenPool, Dir: goldenDirPath, VID: "appvms/work/private", State: "running",
		DoneBytes: 8 << 20, Total: 32 << 20, Queued: time.Date(2026, 11, 25, 18, 40, 11, 0, time.UTC)}}
	done := jobDone{ID: 7, Pool: goldenPool, Dir: goldenDirPath, VID: "vm-templates/fedora/root",
		Finished: time.Date(2026, 11, 25, 18, 41, 2, 0, time.UTC)}
	done.Result.Counters = counters(map[string]int64{"compress_bytes_examined": 100 << 20, "compress_bytes_compressed": 100 << 20})
	done.Result.DiskBefore, done.Result.DiskAfter = 100<<20, 32<<20
	f.recent = []jobDone{done}
	f.counters = counters(map[string]int64{
		"job_done": 1, "compress_bytes_examined": 100 << 20, "compress_bytes_compressed": 100 << 20, "job_bytes_saved": 68 << 20,
		"dedup_tries": 1536, "dedup_hits": 1024, "dedup_misses": 512,
		"dedup_bytes_hashed": 100 << 20, "dedup_bytes_freed": 4 << 20, "dedup_bytes_rewritten": 1 << 20,
		"dedup_ioctl_ms": 35, "dedup_zero_blocks_punched": 256,
	})
	return f
}

// counters are the optimizer's counters of the values by name, read as
// the daemon reads them back after a restart.
func counters(values map[string]int64) jobCounters {
	data, err := json.Marshal(values)
	if err != nil {
		panic(err)
	}
	var c jobCounters
	if err := json.Unmarshal(data, &c); err != nil {
		panic(err)
	}
	return c
}

func goldenSets() measuredSets {
	work := usage{Files: 3, DiskBytes: 4 << 20, UncompressedBytes: 12 << 20, ReferencedBytes: 24 << 20,
		ExclusiveBytes: 4 << 20, ByType: []pool.TypeUsage{
			{Type: "zstd", DiskBytes: 2 << 20, UncompressedBytes: 10 << 20, ReferencedBytes: 20 << 20},
			{Type: "none", DiskBytes: 2 << 20, UncompressedBytes: 2 << 20, ReferencedBytes: 4 << 20},
		}}
	return measuredSets{
		Volumes: []pool.MeasuredSet{{Name: "appvms/work/private", Usage: work}},
		VMs:     []pool.MeasuredSet{{Name: "work", Usage: work}},
	}
}

// Each handler, run on the golden request against fakes, asks the fakes
// for exactly what the request names and answers the golden response.
func TestHandlersAnswerGoldenResponses(t *testing.T) {
	cases := goldenCases()
	for _, op := range api.OpNames() {
		t.Run(string(op), func(t *testing.T) {
			tc, ok := cases[op]
			if !ok {
				t.Fatalf("no golden case for %s", op)
			}
			srv, reg := goldenServer(&tc.store)
			resp := serveGolden(t, srv, readGolden(t, string(op)+".request.json"))
			checkGolden(t, resp, string(op)+".response.json")
			if !reflect.DeepEqual(reg.calls, tc.wantCalls) {
				t.Errorf("registry calls %q, want %q", reg.calls, tc.wantCalls)
			}
			if !reflect.DeepEqual(tc.store.calls, tc.wantStore) {
				t.Errorf("store calls %+v, want %+v", tc.store.calls, tc.wantStore)
			}
		})
	}
}

// goldenFailure is an error whose message is a golden file's and whose
// chain holds the cause that sets the code.
type goldenFailure struct {
	msg   string
	cause error
}

func (e goldenFailure) Error() string { return e.msg }
func (e goldenFailure) Unwrap() error { return e.cause }

// Each golden error is what the daemon answers when the volume store
// fails that way.
func TestHandlersAnswerGoldenErrors(t *testing.T) {
	const badVID = "appvms/../../etc"
	tests := []struct {
		golden string
		op     api.Op
		vid    string
		err    error
	}{
		{"volume.revert.error-not_stopped.json", api.OpVolumeRevert, workPrivate.VID,
			&volume.OpError{Op: "revert", VID: workPrivate.VID, Err: volume.ErrNotStopped}},
		{"volume.stop.error-no_space.json", api.OpVolumeStop, workPrivate.VID,
			&volume.OpError{Op: "stop", VID: workPrivate.VID, Err: fmt.Errorf("%w; the volume is left uncommitted", unix.ENOSPC)}},
		{"volume.start.error-invalid_name.json", api.OpVolumeStart, badVID, &volume.OpError{Op: "start", VID: badVID,
			Err: goldenFailure{`invalid vid "appvms/../../etc": a component is ".."`, volume.ErrInvalidName}}},
	}
	covered := map[string]bool{"hello.error-unsupported_protocol.json": true}
	for _, tt := range tests {
		covered[tt.golden] = true
	}
	files, _ := filepath.Glob(filepath.Join(goldenOpsDir, "*.error-*.json"))
	for _, file := range files {
		if !covered[filepath.Base(file)] {
			t.Errorf("no case for %s", filepath.Base(file))
		}
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			store := &fakeStore{err: tt.err}
			srv, _ := goldenServer(store)
			req := bytes.ReplaceAll(readGolden(t, string(tt.op)+".request.json"), []byte(workPrivate.VID), []byte(tt.vid))
			checkGolden(t, serveGolden(t, srv, req), tt.golden)
			if len(store.calls) != 1 || store.calls[0].spec.VID != tt.vid {
				t.Errorf("store calls %+v, want one for %s", store.calls, tt.vid)
			}
		})
	}
	t.Run("hello.error-unsupported_protocol.json", func(t *testing.T) {
		req := bytes.Replace(readGolden(t, "hello.request.json"), []byte(`"v": 1`), []byte(`"v": 2`), 1)
		srv, _ := goldenServer(&fakeStore{})
		checkGolden(t, serveGolden(t, srv, req), "hello.error-unsupported_protocol.json")
	})
}

// serveGolden answers the request frame as answer does, past the peer
// check and the framing.
func serveGolden(t *testing.T, srv *Server, frame []byte) api.Response {
	t.Helper()
	req, apiErr := decodeRequest(frame)
	if apiErr != nil {
		return failure(apiErr)
	}
	result, err := srv.dispatch(req)
	if err != nil {
		return failure(toAPIError(err))
	}
	raw, err := json.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	return api.Response{OK: true, Result: raw}
}

// checkGolden fails t unless resp is, as JSON, the golden file name.
func checkGolden(t *testing.T, resp api.Response, name string) {
	t.Helper()
	got, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var gotValue, wantValue any
	if err := json.Unmarshal(got, &gotValue); err != nil {
		t.Fatal(err)
	}
	want := readGolden(t, name)
	if err := json.Unmarshal(want, &wantValue); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !reflect.DeepEqual(gotValue, wantValue) {
		var compact bytes.Buffer
		_ = json.Compact(&compact, want)
		t.Errorf("response differs from %s:\n got  %s\n want %s", name, got, compact.Bytes())
	}
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenOpsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A pass is full or cold: asking for both is refused before any volume
// is touched, and a cold pass reaches every volume as one.
func TestOptimizePassKinds(t *testing.T) {
	for _, tc := range []struct {
		name, args string
		wantCode   api.Code
		wantCall   string // the first volume's call
	}{
		{"cold", `"cold": true`, "", "Optimize vm-templates/fedora/root full=false cold=true"},
		{"full and cold", `"full": true, "cold": true`, api.CodeBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, reg := goldenServer(&fakeStore{})
			req := []byte(`{"v": 1, "op": "optimize", "args": {"target": "vdo", ` + tc.args + `}}`)
			resp := serveGolden(t, srv, req)
			switch {
			case tc.wantCode != "" && (resp.OK || resp.Error.Code != tc.wantCode):
				t.Fatalf("response %+v, want error %s", resp, tc.wantCode)
			case tc.wantCode == "" && !resp.OK:
				t.Fatalf("response %+v, want success", resp.Error)
			}
			var first string
			for _, c := range reg.calls {
				if strings.HasPrefix(c, "Optimize ") && first == "" {
					first = c
				}
			}
			if first != tc.wantCall {
				t.Errorf("first volume call %q, want %q (calls %q)", first, tc.wantCall, reg.calls)
			}
		})
	}
}
