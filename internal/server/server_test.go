// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
)

// dialEnv makes the test binary act as a client that sends one hello and
// prints the reply after replyMarker; TestRefusesNonRootPeer runs it as
// nobody. The marker and a stdout read apart from stderr keep the reply
// apart from whatever else the binary prints (go test -cover makes it
// report on stderr that nobody cannot write its coverage data).
const (
	dialEnv     = "BTRFS_VDO_TEST_DIAL"
	replyMarker = "reply: "
)

func TestMain(m *testing.M) {
	if socket := os.Getenv(serveEnv); socket != "" {
		serveWithFewDescriptors(socket)
	}
	if socket := os.Getenv(dialEnv); socket != "" {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		fmt.Fprintln(conn, `{"v":1,"op":"hello","args":{"client":"nobody"}}`)
		reply, _ := bufio.NewReader(conn).ReadString('\n')
		fmt.Print(replyMarker + reply)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startServer serves on a socket in a fresh directory and returns its path.
func startServer(t *testing.T, srv *Server, listen func(path string) (net.Listener, error)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vdo-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "run", "btrfs-vdod.sock")
	ln, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Log == nil {
		srv.Log = logtest.Discard()
	}
	if srv.Pools == nil {
		srv.Pools = PoolRegistry(pooltest.Start(t, pooltest.Options{Log: srv.Log}).Pools)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return path
}

// exchange sends raw bytes (then half-closes) and returns the reply.
func exchange(t *testing.T, path string, raw []byte) api.Response {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		_, _ = conn.Write(raw)
		_ = conn.(*net.UnixConn).CloseWrite()
	}()
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	var resp api.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("reply %q: %v", line, err)
	}
	return resp
}

// The socket is root's alone; its directory is made 0700, and one that
// exists, such as a shared /tmp, keeps its mode.
func TestListenSocketModes(t *testing.T) {
	tests := []struct {
		name    string
		dirMode os.FileMode // of the directory before Listen; 0 for none
		want    os.FileMode
	}{
		{"directory made", 0, 0o700},
		{"shared directory", 0o777 | os.ModeSticky, 0o777 | os.ModeSticky},
		{"root's directory", 0o755, 0o755},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if tt.dirMode != 0 {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, tt.dirMode); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "s.sock")
			ln, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			for p, want := range map[string]os.FileMode{path: 0o600, dir: tt.want} {
				info, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := info.Mode() & (os.ModePerm | os.ModeSticky); got != want {
					t.Errorf("%s mode %v, want %v", p, got, want)
				}
			}
		})
	}
	path := startServer(t, &Server{Version: "test"}, Listen)
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens: a crashed daemon's socket
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()

	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(regular); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
}

func TestBadFrames(t *testing.T) {
	path := startServer(t, &Server{Version: "test", ReadTimeout: 300 * time.Millisecond}, Listen)
	tests := []struct {
		name string
		raw  string
		code api.Code
	}{
		{"garbage", "\x00\xffnot json\n", api.CodeBadRequest},
		{"truncated", `{"v":1,"op":"hel`, api.CodeBadRequest},
		{"oversized", `{"v":1,"op":"hello","args":{"client":"` + strings.Repeat("x", api.MaxFrameBytes) + "\"}}\n", api.CodeBadRequest},
		{"unknown op", `{"v":1,"op":"volume.explode","args":{}}` + "\n", api.CodeBadRequest},
		{"unknown field", `{"v":1,"op":"hello","args":{"client":"x","evil":1}}` + "\n", api.CodeBadRequest},
		{"wrong type", `{"v":1,"op":"volume.start","args":{"pool":"x"}}` + "\n", api.CodeBadRequest},
		{"duplicate op", `{"v":1,"op":"status","op":"hello","args":{}}` + "\n", api.CodeBadRequest},
		{"case-variant op", `{"v":1,"OP":"hello","args":{}}` + "\n", api.CodeBadRequest},
		{"duplicate argument", `{"v":1,"op":"hello","args":{"client":"a","client":"b"}}` + "\n", api.CodeBadRequest},
		{"stray brace", `{"v":1,"op":"hello","args":{}}}` + "\n", api.CodeBadRequest},
		{"two objects", `{"v":1,"op":"hello","args":{}} {"v":1}` + "\n", api.CodeBadRequest},
		{"future version", `{"v":2,"op":"hello","args":{}}` + "\n", api.CodeUnsupportedProtocol},
		{"hostile vid", `{"v":1,"op":"volume.start","args":{"pool":{"name":"p","dir_path":"/tmp"},"volume":{"vid":"appvms/../../etc","rw":true,"save_on_stop":true,"snap_on_start":false,"revisions_to_keep":1,"size":1,"source":""}}}` + "\n", api.CodeInvalidName},
		{"relative pool", `{"v":1,"op":"volume.info","args":{"pool":{"name":"p","dir_path":"tmp/../x"},"volume":{"vid":"appvms/a/b","rw":true,"save_on_stop":true,"snap_on_start":false,"revisions_to_keep":1,"size":1,"source":""}}}` + "\n", api.CodeInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := exchange(t, path, []byte(tt.raw))
			if resp.OK || resp.Error == nil || resp.Error.Code != tt.code {
				t.Fatalf("reply %+v, want code %s", resp, tt.code)
			}
		})
	}
	t.Run("slow client", func(t *testing.T) {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadBytes('\n')
		if err != nil || !strings.Contains(string(line), string(api.CodeBadRequest)) {
			t.Fatalf("a silent client was not cut off: %q %v", line, err)
		}
	})
	t.Run("many oversized at once", func(t *testing.T) { floodOversized(t, path) })
	// The daemon is still serving after all of that.
	resp := exchange(t, path, []byte(`{"v":1,"op":"hello","args":{"client":"t"}}`+"\n"))
	if !resp.OK {
		t.Fatalf("hello after bad frames: %+v", resp.Error)
	}
}

func TestRefusesNonRootPeer(t *testing.T) {
	btrfstest.RequireRoot(t)
	// A world-writable socket, so that only the peer check stands between
	// nobody and the daemon.
	path := startServer(t, &Server{Version: "test"}, func(path string) (net.Listener, error) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		ln, err := net.Listen("unix", path)
		if err == nil {
			err = os.Chmod(path, 0o777)
		}
		return ln, err
	})
	if err := os.Chmod(filepath.Dir(filepath.Dir(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	// nobody cannot run the test binary where go test builds it.
	bin := filepath.Join(filepath.Dir(filepath.Dir(path)), "client.test")
	if err := copyExecutable(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), dialEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as nobody: %v: %s%s", err, out, stderr.String())
	}
	reply, ok := markedLine(string(out), replyMarker)
	if !ok {
		t.Fatalf("no %q line from the client: stdout %q, stderr %q", replyMarker, out, stderr.String())
	}
	var resp api.Response
	if err := json.Unmarshal([]byte(reply), &resp); err != nil {
		t.Fatalf("reply %q: %v", reply, err)
	}
	if resp.OK || resp.Error.Code != api.CodePermissionDenied || !strings.Contains(resp.Error.Message, "uid 65534") {
		t.Fatalf("nobody was served: %+v", resp)
	}
}

func TestVolumeRoundTrip(t *testing.T) {
	mnt := btrfstest.Mount(t, 256<<20)
	path := startServer(t, &Server{Version: "test"}, Listen)
	dir := filepath.Join(mnt, "pool")
	call := func(op api.Op, args any) api.Response {
		raw, _ := json.Marshal(args)
		line, _ := json.Marshal(api.Request{V: 1, Op: op, Args: raw})
		return exchange(t, path, append(line, '\n'))
	}
	p := api.Pool{Name: "vdo", DirPath: dir}
	if resp := call(api.OpPoolSetup, api.PoolSetupArgs{Pool: p, SetupCheck: true}); !resp.OK {
		t.Fatalf("setup: %+v", resp.Error)
	}
	vol := api.Volume{VID: "appvms/work/private", RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 1 << 20}
	for _, op := range []api.Op{api.OpVolumeCreate, api.OpVolumeStart, api.OpVolumeStop} {
		if resp := call(op, api.VolumeArgs{Pool: p, Volume: vol}); !resp.OK {
			t.Fatalf("%s: %+v", op, resp.Error)
		}
	}
	resp := call(api.OpVolumeRevert, api.RevertArgs{Pool: p, Volume: vol, Revision: "7"})
	if resp.OK || resp.Error.Code != api.CodeNotFound {
		t.Fatalf("revert to a missing revision: %+v", resp)
	}
	resp = call(api.OpStatus, api.StatusArgs{})
	var st api.StatusResult
	if err := json.Unmarshal(resp.Result, &st); err != nil || len(st.Pools) != 1 || st.Pools[0].Commits != 1 {
		t.Fatalf("status %s: %v", resp.Result, err)
	}
}

// markedLine returns the rest of the first line of out that starts with
// marker.
func markedLine(out, marker string) (string, bool) {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, marker); ok {
			return rest, true
		}
	}
	return "", false
}

func copyExecutable(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}
