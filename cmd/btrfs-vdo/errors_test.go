// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// runAsEnv makes the test binary run the CLI instead of the tests, so a
// test can run it as another user.
const runAsEnv = "BTRFS_VDO_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(runAsEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// A user who forgot sudo is told so, whether the socket's directory keeps
// them out or the daemon refuses them.
func TestNeedsRoot(t *testing.T) {
	btrfstest.RequireRoot(t) // to run the CLI as another user
	socket := startDaemon(t)
	bin := copyExecutable(t)
	tests := []struct {
		name      string
		prepare   func()
		wantCause string
	}{
		{"socket out of reach", func() {}, "permission denied"},
		{"daemon refuses", func() { openUp(t, socket) }, "is not allowed; only uid 0 is served"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.prepare()
			var out, errOut bytes.Buffer
			cmd := exec.Command(bin, "--socket", socket, "status")
			cmd.Env = append(os.Environ(), runAsEnv+"=1")
			cmd.Stdout, cmd.Stderr = &out, &errOut
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			err := cmd.Run()
			msg := errOut.String()
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitFailure ||
				!strings.HasPrefix(msg, "btrfs-vdo: needs root (run with sudo)") || !strings.Contains(msg, tt.wantCause) {
				t.Fatalf("%v, stderr %q; want exit 1, \"needs root (run with sudo)\" and %q", err, msg, tt.wantCause)
			}
		})
	}
}

// copyExecutable copies the test binary where another user can run it.
func copyExecutable(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	openUp(t, dir)
	self, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	bin := filepath.Join(dir, "btrfs-vdo")
	f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, self)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// openUp lets everyone reach path: it and its parents up to the temp dir.
func openUp(t *testing.T, path string) {
	t.Helper()
	for p := path; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
}
