// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

var optimizedVolumes = []string{"vm-templates/fedora/root", "appvms/work/private", "appvms/mail/private"}

func optimizedPool(t *testing.T) (socket string, p api.Pool) {
	mnt := btrfstest.Mount(t, 1<<30)
	socket = startDaemon(t)
	p = setupPool(t, socket, "vdo", filepath.Join(mnt, "vdo"))
	for _, vid := range optimizedVolumes {
		createVolume(t, socket, p, vid, compressible(16<<20, vid))
	}
	return socket, p
}

// Each optimize run reports exactly its own jobs, by id, even when the
// same volumes were optimized just before; its progress counts out of
// every volume it queued, never past them.
func TestOptimizeReportsItsOwnJobs(t *testing.T) {
	socket, p := optimizedPool(t)
	lineInterval = 0
	t.Cleanup(func() { lineInterval = 5 * time.Second })

	r := cli(t, socket, "optimize", "--full", "--json", p.Name)
	if r.code != exitOK {
		t.Fatalf("first run: exit %d: %s", r.code, r.stderr)
	}
	var first optimizeReport
	if err := json.Unmarshal([]byte(r.stdout), &first); err != nil {
		t.Fatal(err)
	}
	if got, want := idsOf(first.Queued), outcomeIDs(first.Outcomes); len(got) != len(optimizedVolumes) || !slices.Equal(got, want) {
		t.Fatalf("queued %v, outcomes %v", got, want)
	}
	checkProgressLines(t, r.stderr, len(optimizedVolumes))

	r = cli(t, socket, "optimize", "--full", p.DirPath)
	if r.code != exitOK {
		t.Fatalf("second run: exit %d: %s", r.code, r.stderr)
	}
	rows := regexp.MustCompile(`(?m)^\s*(\d+)  (vdo:\S+)`).FindAllStringSubmatch(r.stdout, -1)
	var vids []string
	for _, row := range rows {
		id, _ := strconv.ParseUint(row[1], 10, 64)
		if slices.Contains(idsOf(first.Queued), id) {
			t.Errorf("second run shows the first run's job %d:\n%s", id, r.stdout)
		}
		vids = append(vids, strings.TrimPrefix(row[2], "vdo:"))
	}
	want := slices.Clone(optimizedVolumes)
	slices.Sort(want)
	if !slices.Equal(vids, want) {
		t.Errorf("second run's rows %v, want %v:\n%s", vids, want, r.stdout)
	}
	checkProgressLines(t, r.stderr, len(optimizedVolumes))
}

// checkProgressLines checks that every progress line counts out of all
// the volumes queued and never goes back or past 100%.
func checkProgressLines(t *testing.T, stderr string, volumes int) {
	t.Helper()
	lines := regexp.MustCompile(`optimizing: (\d+) of (\d+) volumes done, (\d+)%`).FindAllStringSubmatch(stderr, -1)
	if len(lines) == 0 {
		t.Fatalf("no progress line in %q", stderr)
	}
	last := 0
	for _, l := range lines {
		of, _ := strconv.Atoi(l[2])
		pct, _ := strconv.Atoi(l[3])
		if of != volumes || pct > 100 || pct < last {
			t.Fatalf("progress line %q after %d%%, want out of %d volumes, 0..100%% rising", l[0], last, volumes)
		}
		last = pct
	}
}

func idsOf(queued []api.QueuedJob) []uint64 {
	var ids []uint64
	for _, q := range queued {
		ids = append(ids, q.ID)
	}
	slices.Sort(ids)
	return ids
}

func outcomeIDs(outcomes []api.JobOutcome) []uint64 {
	var ids []uint64
	for _, o := range outcomes {
		if o.Error != "" {
			panic(fmt.Sprintf("job %d failed: %s", o.ID, o.Error))
		}
		ids = append(ids, o.ID)
	}
	slices.Sort(ids)
	return ids
}

// The progress of a run over several volumes counts out of all of them
// from the start: finished volumes count whole, the running one by its
// bytes, and outcomes of other runs on the same volumes do not count.
func TestTrackerProgress(t *testing.T) {
	vol := func(vid string) api.VolumeRef { return api.VolumeRef{Pool: "vdo", DirPath: "/p", VID: vid} }
	queued := []api.QueuedJob{{VolumeRef: vol("a"), ID: 11}, {VolumeRef: vol("b"), ID: 12}, {VolumeRef: vol("c"), ID: 13}}
	job := func(id uint64, vid string, state api.JobState, done, total uint64) api.JobInfo {
		return api.JobInfo{VolumeRef: vol(vid), ID: id, State: state, DoneBytes: done, TotalBytes: total}
	}
	outcome := func(id uint64, vid string) api.JobOutcome { return api.JobOutcome{VolumeRef: vol(vid), ID: id} }
	polls := []struct {
		res      api.JobsResult
		done     float64
		finished bool
	}{
		{api.JobsResult{Jobs: []api.JobInfo{job(11, "a", api.JobRunning, 50, 100), job(12, "b", api.JobQueued, 0, 0), job(13, "c", api.JobQueued, 0, 0)},
			Recent: []api.JobOutcome{outcome(3, "a"), outcome(4, "b")}}, 0.5, false},
		{api.JobsResult{Jobs: []api.JobInfo{job(12, "b", api.JobRunning, 100, 1000), job(13, "c", api.JobQueued, 0, 0)},
			Recent: []api.JobOutcome{outcome(3, "a"), outcome(4, "b"), outcome(11, "a")}}, 1.1, false},
		{api.JobsResult{Jobs: []api.JobInfo{job(13, "c", api.JobHeld, 0, 0)},
			Recent: []api.JobOutcome{outcome(11, "a"), outcome(12, "b")}}, 3, true},
	}
	tr := newTracker(queued)
	for i, p := range polls {
		done, finished := tr.poll(p.res)
		if fmt.Sprintf("%.2f", done) != fmt.Sprintf("%.2f", p.done) || finished != p.finished {
			t.Fatalf("poll %d: %.2f of 3 done, finished %v; want %.2f, %v", i, done, finished, p.done, p.finished)
		}
	}
	outcomes, held := tr.results()
	if got := outcomeIDs(outcomes); !slices.Equal(got, []uint64{11, 12}) || len(held) != 1 || held[0].ID != 13 {
		t.Fatalf("outcomes %v, held %+v", got, held)
	}
}

// A waiting command asks often for two seconds, so that it ends soon after
// a short job, then every pollInterval.
func TestPollDelays(t *testing.T) {
	delay := pollDelays()
	for i := range quickPolls + 3 {
		want := quickPoll
		if i >= quickPolls {
			want = pollInterval
		}
		if got := delay(); got != want {
			t.Fatalf("delay %d: %v, want %v", i, got, want)
		}
	}
}

// Ctrl-C stops only the waiting: the CLI says the jobs go on and how to
// follow them, and the daemon finishes them.
func TestOptimizeInterrupted(t *testing.T) {
	mnt := btrfstest.Mount(t, 2<<30)
	socket := startDaemon(t)
	p := setupPool(t, socket, "vdo", filepath.Join(mnt, "vdo"))
	createVolume(t, socket, p, "appvms/big/private", letters(256<<20))
	var out, errOut bytes.Buffer
	cmd := exec.Command(os.Args[0], "--socket", socket, "optimize", "--full", "vdo")
	cmd.Env = append(os.Environ(), runAsEnv+"=1")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForRunningJob(t, socket)
	time.Sleep(300 * time.Millisecond) // the CLI is waiting by now
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted ||
		!strings.Contains(errOut.String(), `1 job continues in the background; follow with "btrfs-vdo jobs --wait"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	r := cli(t, socket, "jobs", "--wait", "--json")
	var jobs api.JobsResult
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil || len(jobs.Recent) != 1 || jobs.Recent[0].Error != "" ||
		jobs.Recent[0].BytesExamined == 0 {
		t.Fatalf("after the interrupt the job did not finish: %v %+v", err, jobs)
	}
}

// letters returns n bytes of random letters: they compress by about a
// third and hold no repeated blocks, so a job over them takes a while.
func letters(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(rng.IntN(26))
	}
	return b
}

func waitForRunningJob(t *testing.T, socket string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var jobs api.JobsResult
		if err := request(t, socket, api.OpJobs, api.JobsArgs{}, &jobs); err != nil {
			t.Fatal(err)
		}
		if len(jobs.Recent) > 0 {
			t.Fatal("the job finished before the interrupt: give it more data")
		}
		for _, j := range jobs.Jobs {
			if j.State == api.JobRunning {
				return
			}
		}
	}
	t.Fatal("no job started running")
}
