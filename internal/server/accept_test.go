// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

func TestTemporaryAcceptError(t *testing.T) {
	accept := func(errno unix.Errno) error {
		return &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", errno)}
	}
	tests := []struct {
		err  error
		want bool
	}{
		{accept(unix.EMFILE), true},
		{accept(unix.ENFILE), true},
		{accept(unix.ECONNABORTED), true},
		{accept(unix.ENOBUFS), true},
		{accept(unix.ENOMEM), true},
		{accept(unix.EBADF), false},
		{accept(unix.EINVAL), false},
		{&net.OpError{Op: "accept", Net: "unix", Err: net.ErrClosed}, false},
	}
	for _, tt := range tests {
		if got := temporaryAcceptError(tt.err); got != tt.want {
			t.Errorf("temporaryAcceptError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestNextBackoff(t *testing.T) {
	var got []time.Duration
	var d time.Duration
	for range 10 {
		d = nextBackoff(d)
		got = append(got, d)
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", got, want)
		}
	}
}

// TestConnectionLimit fills the server's connections with idle clients
// and checks that one more waits, unanswered, until one of them leaves.
func TestConnectionLimit(t *testing.T) {
	const limit = 3
	path := startServer(t, &Server{Version: "test", MaxConns: limit}, Listen)
	idle := make([]net.Conn, limit)
	for i := range idle {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		idle[i] = conn
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintln(conn, `{"v":1,"op":"hello","args":{"client":"over the limit"}}`); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if line, err := r.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection %d of a limit of %d was served at once: %q, %v", limit+1, limit, line, err)
	}
	idle[0].Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil || !strings.Contains(line, `"ok":true`) {
		t.Fatalf("reply once a connection was free: %q, %v", line, err)
	}
}

// serveEnv makes the test binary a daemon serving on the socket it names
// with RLIMIT_NOFILE lowered to lowNoFile; TestSurvivesDescriptorExhaustion
// floods it.
const (
	serveEnv     = "BTRFS_VDO_TEST_SERVE"
	lowNoFile    = 64
	floodIdle    = 80
	acceptFailed = "accept failed"
	thirdRetry   = "retry_in=20ms"
)

// serveWithFewDescriptors is the child of TestSurvivesDescriptorExhaustion:
// it serves until SIGTERM and exits 1 if Serve fails. Its connection
// limit is above what its descriptors allow, so that the flood runs it
// out of descriptors rather than into the limit.
func serveWithFewDescriptors(path string) {
	lim := unix.Rlimit{Cur: lowNoFile, Max: lowNoFile}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ln, err := Listen(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pools, err := pool.NewRegistry(pool.Config{Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
	srv := &Server{Version: "test", Log: log, Pools: PoolRegistry(pools), MaxConns: 4 * floodIdle}
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestSurvivesDescriptorExhaustion runs a daemon with lowNoFile
// descriptors and floods it with more idle connections than that: the
// daemon runs out of descriptors, keeps going, answers the request it was
// reading when that happened, and answers new ones once the flood ends.
func TestSurvivesDescriptorExhaustion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "btrfs-vdod.sock")
	child := startChildDaemon(t, path)
	waitServing(t, path)

	// A request in flight: connected and half sent when the flood comes.
	inFlight, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer inFlight.Close()
	if _, err := inFlight.Write([]byte(`{"v":1,"op":"hello",`)); err != nil {
		t.Fatal(err)
	}
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range floodIdle {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
	}
	// The third failed accept in a row, each after a longer pause.
	if !child.waitLog(thirdRetry, 10*time.Second) {
		t.Fatalf("the daemon did not log %q (out of descriptors, going on); its log:\n%s", thirdRetry, child.log())
	}
	if _, err := inFlight.Write([]byte(`"args":{"client":"in flight"}}` + "\n")); err != nil {
		t.Fatal(err)
	}
	_ = inFlight.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(inFlight).ReadString('\n')
	if err != nil || !strings.Contains(line, `"ok":true`) {
		t.Fatalf("request in flight during the flood: %q, %v; daemon log:\n%s", line, err, child.log())
	}

	for _, c := range flood {
		c.Close()
	}
	flood = nil
	if resp := exchange(t, path, []byte(`{"v":1,"op":"hello","args":{"client":"after"}}`+"\n")); !resp.OK {
		t.Fatalf("hello after the flood: %+v", resp.Error)
	}
	t.Logf("the daemon retried accept %d times", strings.Count(child.log(), acceptFailed))
	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child.cmd.Wait(); err != nil {
		t.Fatalf("daemon: %v; its log:\n%s", err, child.log())
	}
}

// childDaemon is a running serveWithFewDescriptors and its stderr.
type childDaemon struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	grew  chan struct{} // receives after each new line
}

func startChildDaemon(t *testing.T, path string) *childDaemon {
	t.Helper()
	c := &childDaemon{cmd: exec.Command(os.Args[0]), grew: make(chan struct{}, 1)}
	c.cmd.Env = append(os.Environ(), serveEnv+"="+path)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
			select {
			case c.grew <- struct{}{}:
			default:
			}
		}
	}()
	return c
}

func (c *childDaemon) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// waitLog waits up to timeout for a log line containing s.
func (c *childDaemon) waitLog(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		if strings.Contains(c.log(), s) {
			return true
		}
		select {
		case <-c.grew:
		case <-deadline:
			return false
		}
	}
}

// waitServing waits until the daemon at path answers.
func waitServing(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not serving on %s: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
