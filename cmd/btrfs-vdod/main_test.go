// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus/bustest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/client"
	"github.com/btrfs-vdo/btrfs-vdo/internal/version"
)

// execEnv makes the test binary a launcher, as systemd is for a socket
// unit: it sets LISTEN_PID to its own pid, which exec keeps, and execs the
// daemon binary named by the variable with its arguments.
const execEnv = "BTRFS_VDOD_TEST_EXEC"

// daemonBin is btrfs-vdod, built once by TestMain.
var daemonBin string

func TestMain(m *testing.M) {
	if bin := os.Getenv(execEnv); bin != "" {
		os.Unsetenv(execEnv)
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		err := syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), os.Environ())
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(127)
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "btrfs-vdod-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	daemonBin = filepath.Join(dir, "btrfs-vdod")
	if out, err := exec.Command("go", "build", "-o", daemonBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// vdod is a running btrfs-vdod.
type vdod struct {
	cmd    *exec.Cmd
	socket string
	log    string        // path of its stderr
	exited chan struct{} // closed when it has exited
}

// daemonOpts say how to start the daemon.
type daemonOpts struct {
	config   string   // the configuration file's text
	activate bool     // pass a listening socket as systemd does
	env      []string // added to the environment
	journal  bool     // JOURNAL_STREAM names stderr, as under systemd
}

// startDaemon starts btrfs-vdod with a configuration file of its own and a
// system bus address that leads nowhere unless env sets one.
func startDaemon(t *testing.T, o daemonOpts) *vdod {
	t.Helper()
	dir := t.TempDir()
	d := &vdod{socket: filepath.Join(dir, "btrfs-vdod.sock"), log: filepath.Join(dir, "daemon.log"), exited: make(chan struct{})}
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(o.config), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	// Never the system's state directory: what a test daemon remembers
	// dies with the test.
	args := []string{"--config", configPath, "--log-level", "debug", "--state-dir", filepath.Join(dir, "state")}
	env := append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path="+filepath.Join(dir, "no-bus"))
	if o.journal {
		env = append(env, "JOURNAL_STREAM="+devIno(stderr))
	}
	bin := daemonBin
	var extra []*os.File
	if o.activate {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.socket, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.File()
		ln.SetUnlinkOnClose(false) // the socket now belongs to the daemon
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		extra = []*os.File{f} // fd 3, SD_LISTEN_FDS_START
		env = append(env, "LISTEN_FDS=1", execEnv+"="+daemonBin)
		bin = os.Args[0]
	} else {
		args = append(args, "--socket", d.socket)
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env = append(env, o.env...)
	d.cmd.Stderr = stderr
	d.cmd.ExtraFiles = extra
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logText(t))
		}
	})
	return d
}

func (d *vdod) logText(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// call sends one request, retrying while the daemon is starting.
func (d *vdod) call(t *testing.T, op api.Op, args, result any) {
	t.Helper()
	c := client.New(d.socket)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Call(ctx, op, args, result)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", op, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit code and how long it took.
func (d *vdod) stop(t *testing.T) (int, time.Duration) {
	t.Helper()
	began := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode(), time.Since(began)
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon did not exit after SIGTERM")
		return 0, 0
	}
}

// notifySocket listens as systemd's NOTIFY_SOCKET does.
func notifySocket(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestSocketActivationAndNotify(t *testing.T) {
	notify, notifyPath := notifySocket(t)
	elsewhere := filepath.Join(t.TempDir(), "configured.sock")
	d := startDaemon(t, daemonOpts{
		config:   fmt.Sprintf("socket = %q\n", elsewhere),
		activate: true,
		env:      []string{"NOTIFY_SOCKET=" + notifyPath},
	})
	if got := readNotify(t, notify); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	var st api.StatusResult
	d.call(t, api.OpStatus, api.StatusArgs{}, &st)
	if st.Protocol != api.ProtocolVersion {
		t.Errorf("status over the passed socket: %+v", st)
	}
	if _, err := os.Stat(elsewhere); err == nil {
		t.Errorf("the daemon listened on %s although systemd passed a socket", elsewhere)
	}
	code, _ := d.stop(t)
	if got := readNotify(t, notify); got != "STOPPING=1" {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", got)
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	log := d.logText(t)
	if !strings.Contains(log, "using the socket passed by systemd") {
		t.Errorf("log does not mention the passed socket:\n%s", log)
	}
	if n := strings.Count(log, "no D-Bus system bus"); n != 1 {
		t.Errorf("log mentions the missing bus %d times, want once:\n%s", n, log)
	}
}

// Without systemd the daemon makes its own socket; on SIGTERM it waits for
// a request in flight only as long as stop_timeout.
func TestStopTimeoutWithoutSystemd(t *testing.T) {
	d := startDaemon(t, daemonOpts{config: "stop_timeout = \"300ms\"\n"})
	d.call(t, api.OpHello, api.HelloArgs{Client: "test"}, nil)
	idle, err := net.Dial("unix", d.socket) // connects and never sends
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(100 * time.Millisecond) // let the daemon accept it
	code, took := d.stop(t)
	if code != 1 || took > 10*time.Second {
		t.Errorf("exit code %d after %s, want 1 soon after the 300ms stop timeout", code, took)
	}
	if log := d.logText(t); !strings.Contains(log, "gave up waiting for requests in flight after 300ms") {
		t.Errorf("log lacks the reason:\n%s", log)
	}
}

// Under the journal every line the daemon writes carries its priority,
// up to the error it exits with.
func TestJournalPriorities(t *testing.T) {
	d := startDaemon(t, daemonOpts{config: "stop_timeout = \"300ms\"\n", journal: true})
	d.call(t, api.OpHello, api.HelloArgs{Client: "test"}, nil)
	idle, err := net.Dial("unix", d.socket) // connects and never sends
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(100 * time.Millisecond) // let the daemon accept it
	if code, _ := d.stop(t); code != 1 {
		t.Fatalf("exit code %d, want 1 after the stop timeout", code)
	}
	lines := strings.Split(strings.TrimSuffix(d.logText(t), "\n"), "\n")
	for _, want := range []string{"<6>level=INFO msg=listening ", "<7>level=DEBUG msg=\"request done\" op=hello ",
		"<3>btrfs-vdod: gave up waiting for requests in flight after 300ms"} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("no line begins with %q", want)
		}
	}
	for _, l := range lines {
		if !regexp.MustCompile(`^<[3467]>`).MatchString(l) {
			t.Errorf("line without a priority: %q", l)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.toml", "zstd_level = 9\n")
	bad := write("bad.toml", "zstd_level = 9\nzstd_levl = 3\njob_concurrency = 0\n")
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"valid file", []string{"--check-config", "--config", good}, 0, []string{good + ": OK"}},
		{"shipped example", []string{"--check-config", "--config", "../../packaging/config.toml"}, 0, []string{": OK"}},
		{"every problem reported", []string{"--check-config", "--config", bad}, 1, []string{
			bad + ":2: zstd_levl: unknown key", bad + ":3: job_concurrency: 0 is not between 1 and 64",
		}},
		{"missing explicit file", []string{"--check-config", "--config", filepath.Join(dir, "none.toml")}, 1, []string{"no such file"}},
		{"bad file stops the daemon", []string{"--config", bad}, 1, []string{"zstd_levl: unknown key"}},
		{"unknown flag", []string{"--frobnicate"}, 2, []string{"Usage: btrfs-vdod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(daemonBin, tt.args...)
			out, _ := cmd.CombinedOutput()
			code := cmd.ProcessState.ExitCode()
			if code != tt.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tt.code, out)
			}
			for _, want := range tt.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// On a bus, a file-changing request takes logind's delay lock and gives it
// back when it ends, the jobs pause on battery, and the pools' status can
// be read with busctl.
func TestDBus(t *testing.T) {
	b := bustest.Start(t)
	logind := bustest.NewLogind(t, b.Conn(t))
	upower := bustest.NewUPower(t, b.Conn(t), true)
	d := startDaemon(t, daemonOpts{env: []string{"DBUS_SYSTEM_BUS_ADDRESS=" + b.Address}})
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "appvms", "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := api.VolumeArgs{
		Pool:   api.Pool{Name: "vdo", DirPath: dir},
		Volume: api.Volume{VID: "appvms/work/volatile", RW: true, Size: 1 << 20},
	}
	d.call(t, api.OpVolumeCreate, args, nil)
	locks := logind.Locks()
	if len(locks) != 1 {
		t.Fatalf("logind handed out %d locks for one create, want 1", len(locks))
	}
	if l := locks[0]; l.What != "shutdown:sleep" || l.Mode != "delay" || l.Held() {
		t.Errorf("lock %+v, held %v; want a delay lock on shutdown:sleep, released after the request", l, l.Held())
	}
	tests := []struct{ property, want string }{
		{"Version", fmt.Sprintf("s %q", version.Version)},
		{"Pools", fmt.Sprintf("a(sstt) 1 \"vdo\" %q 0 0", dir)},
		{"JobsRunning", "u 0"},
	}
	for _, tt := range tests {
		out, err := exec.Command("busctl", "--address="+b.Address, "get-property",
			bus.Name, string(bus.Path), bus.Interface, tt.property).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != tt.want {
			t.Errorf("busctl get-property %s: %q, %v; want %q", tt.property, got, err, tt.want)
		}
	}
	d.waitLog(t, "optimizer paused")
	upower.SetOnBattery(false)
	d.waitLog(t, "optimizer resumed")
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// waitLog waits for the daemon to log text.
func (d *vdod) waitLog(t *testing.T, text string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.logText(t), text); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not log %q", text)
		}
	}
}
