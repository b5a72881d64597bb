// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/client"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/server"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
)

// startDaemon serves a real daemon, with its optimizer running, on a
// socket of its own.
func startDaemon(t *testing.T) string {
	t.Helper()
	path, _ := serveDaemon(t, optimizer.SchedulerConfig{})
	return path
}

// serveDaemon serves pools and an optimizer of configuration cfg, wired
// as btrfs-vdod wires them, on a socket of its own, and returns the
// socket's path and the pools.
func serveDaemon(t *testing.T, cfg optimizer.SchedulerConfig) (string, *pool.Registry) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "s.sock")
	ln, err := server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	d := pooltest.Start(t, pooltest.Options{Optimizer: &cfg})
	srv := &server.Server{Pools: server.PoolRegistry(d.Pools), Log: logtest.Discard(), Version: "9.9.9"}
	if d.Jobs != nil { // a nil *Scheduler in the interface would not read as nil
		srv.Jobs = d.Jobs
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return path, d.Pools
}

// result is what one run of the CLI printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the CLI on args, against socket when it is not "".
func cli(t *testing.T, socket string, args ...string) result {
	t.Helper()
	if socket != "" {
		args = append([]string{"--socket", socket}, args...)
	}
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{out.String(), errOut.String(), code}
}

// request sends one request to the daemon as qubesd would.
func request(t *testing.T, socket string, op api.Op, args, res any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return client.New(socket).Call(ctx, op, args, res)
}

// setupPool adds a pool at dir through the daemon, as qvm-pool add does.
func setupPool(t *testing.T, socket, name, dir string) api.Pool {
	t.Helper()
	p := api.Pool{Name: name, DirPath: dir}
	if err := request(t, socket, api.OpPoolSetup, api.PoolSetupArgs{Pool: p}, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// createVolume creates an origin volume and fills its image with data
// that compresses, as a VM's commit would leave it.
func createVolume(t *testing.T, socket string, p api.Pool, vid string, data []byte) {
	t.Helper()
	vol := api.Volume{VID: vid, RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: int64(len(data))}
	if err := request(t, socket, api.OpVolumeCreate, api.VolumeArgs{Pool: p, Volume: vol}, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.DirPath, vid+".img"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// compressible returns n bytes of text that zstd shrinks well, different
// for each seed, so that no two volumes deduplicate into each other.
func compressible(n int, seed string) []byte {
	line := []byte(seed + ": libfoo.so.1 => /usr/lib/libfoo.so.1 (0x00007f)\n")
	return bytes.Repeat(line, n/len(line)+1)[:n]
}

func TestCommands(t *testing.T) {
	socket := startDaemon(t)
	missing := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"status", []string{"--socket", socket, "status"}, exitOK, "btrfs-vdod 9.9.9 (protocol 1)"},
		{"status json", []string{"--socket", socket, "status", "--json"}, exitOK, `"daemon": "9.9.9"`},
		{"version", []string{"--socket", socket, "version"}, exitOK, "btrfs-vdod 9.9.9"},
		{"status without pools", []string{"--socket", socket, "status"}, exitOK, "no pool known yet"},
		{"stats without pools", []string{"--socket", socket, "stats"}, exitOK, "no volume to measure"},
		{"jobs without jobs", []string{"--socket", socket, "jobs"}, exitOK, "no job queued or running"},
		{"no command", nil, exitUsage, "Usage:"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"bad flag", []string{"--socket", socket, "status", "--yaml"}, exitUsage, "flag provided but not defined"},
		{"daemon down", []string{"--socket", missing, "status"}, exitFailure, "btrfs-vdod is not reachable at " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, "", tt.args...)
			if all := r.stdout + r.stderr; r.code != tt.code || !strings.Contains(all, tt.contains) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d containing %q", r.code, all, tt.code, tt.contains)
			}
		})
	}
}
