// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/client"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// daemonStartWait and daemonStopWait bound how long the daemon may take to
// listen, and to finish its requests after SIGTERM.
const (
	daemonStartWait = 10 * time.Second
	daemonStopWait  = 60 * time.Second
)

// jobsPoll is how often the benchmark asks whether the optimizer is done:
// fine enough not to blur a job of a tenth of a second (the CLI's --wait
// polls every 20 ms at first).
const jobsPoll = 5 * time.Millisecond

// jobAppearWait bounds how long a commit's job may take to be queued.
const jobAppearWait = 5 * time.Second

// errNotAvailable marks a command or operation this build of btrfs-vdo lacks.
var errNotAvailable = errors.New("not available")

// Daemon is a btrfs-vdod listening on a socket of its own, as
// tests/harness.py runs it.
type Daemon struct {
	cmd     *exec.Cmd
	bin     string // directory of btrfs-vdod and btrfs-vdo
	socket  string
	log     string
	client  *client.Client
	exited  chan struct{} // closed when the daemon has exited, with waitErr
	waitErr error
}

func StartDaemon(e *Env, bin string) (*Daemon, error) {
	d := &Daemon{
		bin:    bin,
		socket: filepath.Join(e.dir, "run", "btrfs-vdod.sock"),
		log:    filepath.Join(e.dir, "daemon.log"),
	}
	d.client = client.New(d.socket)
	logFile, err := os.Create(d.log)
	if err != nil {
		return nil, fmt.Errorf("create daemon log: %w", err)
	}
	defer logFile.Close()
	// Its own configuration (the defaults) and state directory: neither
	// the host's settings nor the pools earlier runs left in the host's
	// state (a -keep run's pool, which a daemon would serve, cold pass
	// included) reach the figures.
	config := filepath.Join(e.dir, "run", "config.toml")
	if err := os.MkdirAll(filepath.Dir(config), 0o700); err != nil {
		return nil, fmt.Errorf("make daemon directory: %w", err)
	}
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		return nil, fmt.Errorf("write daemon configuration: %w", err)
	}
	d.cmd = exec.Command(filepath.Join(bin, "btrfs-vdod"), "--socket", d.socket, "--log-level", "debug",
		"--config", config, "--state-dir", filepath.Join(e.dir, "run", "state"))
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	// Its own process group: a ^C reaches only the benchmark, which then
	// stops the daemon in order.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start btrfs-vdod: %w", err)
	}
	d.exited = make(chan struct{})
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	e.onClose("stop btrfs-vdod", true, d.Stop)
	deadline := time.Now().Add(daemonStartWait)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("unix", d.socket); err == nil {
			conn.Close()
			return d, nil
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("btrfs-vdod exited at start (%v); log %s:\n%s", d.waitErr, d.log, d.Tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("btrfs-vdod did not listen on %s within %v; log:\n%s", d.socket, daemonStartWait, d.Tail())
}

// Stop sends SIGTERM, so requests in flight finish and the daemon writes
// back what it keeps in memory (a pool's dedup index, which it otherwise
// writes within seconds of the last job), and kills the daemon if it does
// not exit in time. A stopped daemon stays stopped.
func (d *Daemon) Stop() error {
	select {
	case <-d.exited:
		return nil
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop btrfs-vdod: %w", err)
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(daemonStopWait):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("btrfs-vdod ignored SIGTERM for %v; killed it", daemonStopWait)
	}
}

// Settle waits for the daemon's next look at its idle pools, which
// writes back the dedup index their last jobs changed, so that a pass
// timed next does not count that write.
func (d *Daemon) Settle(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(pool.IdleRelease + time.Second):
		return nil
	}
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// CPU is the daemon's CPU time so far plus the benchmark's reaped
// children (the CLI runs).
func (d *Daemon) CPU() (time.Duration, error) {
	t, err := processCPU(d.cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	c, err := ChildrenCPU()
	return t + c, err
}

// Call sends one request to the daemon.
func (d *Daemon) Call(ctx context.Context, op api.Op, args, result any) error {
	if err := d.client.Call(ctx, op, args, result); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// cli runs btrfs-vdo against the daemon and returns its output. A command
// this build does not know yields errNotAvailable.
func (d *Daemon) cli(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "btrfs-vdo"), append([]string{"--socket", d.socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 && strings.Contains(stderr.String(), "unknown command") {
		return nil, fmt.Errorf("btrfs-vdo %s: %w", args[0], errNotAvailable)
	}
	if err != nil {
		return out, fmt.Errorf("btrfs-vdo %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Tail is the end of the daemon's log, for error messages.
func (d *Daemon) Tail() string {
	data, _ := os.ReadFile(d.log)
	const keep = 4 << 10
	if len(data) > keep {
		data = data[len(data)-keep:]
	}
	return string(data)
}

// waitJobs polls the daemon until no job in the pool at dir is queued or
// running and, when vid is not "", a job for vid has finished since since;
// it returns the outcomes of the pool's jobs finished since since (whole
// seconds, as the daemon reports them). If no job for vid shows up within
// jobAppearWait, it returns without one.
func (d *Daemon) waitJobs(ctx context.Context, dir, vid string, since time.Time) ([]api.JobOutcome, error) {
	idleSince := time.Time{}
	for {
		var res api.JobsResult
		err := d.client.Call(ctx, api.OpJobs, api.JobsArgs{}, &res)
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Code == api.CodeBadRequest {
			return nil, fmt.Errorf("%s: %w (%v)", api.OpJobs, errNotAvailable, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", api.OpJobs, err)
		}
		busy := false
		for _, j := range res.Jobs {
			busy = busy || j.DirPath == dir && (j.State == api.JobQueued || j.State == api.JobRunning)
		}
		var out []api.JobOutcome
		found := vid == ""
		for _, o := range res.Recent {
			finished, err := time.Parse(time.RFC3339, o.Finished)
			if err == nil && o.DirPath == dir && !finished.Before(since.Truncate(time.Second)) {
				out = append(out, o)
				found = found || o.VID == vid
			}
		}
		switch {
		case busy:
			idleSince = time.Time{}
		case found:
			return out, nil
		case idleSince.IsZero():
			idleSince = time.Now()
		case time.Since(idleSince) > jobAppearWait:
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(jobsPoll):
		}
	}
}

// usageMeasuredWait bounds how long a pool measurement may take to follow
// its jobs: a second after the last, later on a pool costly to measure.
const usageMeasuredWait = time.Minute

// UsageTime is when the daemon last measured the pool at dir, from its
// usage file, or 0 if it never did.
func UsageTime(dir string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, optimizer.UsageFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var rec optimizer.UsageRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return 0, fmt.Errorf("read %s: %w", optimizer.UsageFile, err)
	}
	return rec.Time, nil
}

// WaitMeasured waits for the daemon to measure the pool at dir again
// after the measurement made at before (UsageTime): the one that follows
// a pass's jobs, in the background, when nothing else is left to measure.
func WaitMeasured(ctx context.Context, dir string, before int64) error {
	for deadline := time.Now().Add(usageMeasuredWait); ; {
		t, err := UsageTime(dir)
		if err != nil || t != before {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool %s not measured within %s", dir, usageMeasuredWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(jobsPoll):
		}
	}
}
