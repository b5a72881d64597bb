package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/server"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

func startDaemon(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "s.sock")
	ln, err := server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &server.Server{Pools: pool.NewRegistry(log, nil), Log: log, Version: "9.9.9"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
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
		{"help", []string{"help"}, exitOK, "Commands:"},
		{"no command", nil, exitUsage, "Usage:"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"bad flag", []string{"--socket", socket, "status", "--yaml"}, exitUsage, "flag provided but not defined"},
		{"daemon down", []string{"--socket", missing, "status"}, exitFailure, "btrfs-vdod is not reachable at " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			all := out.String() + errOut.String()
			if code != tt.code || !strings.Contains(all, tt.contains) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d containing %q", code, all, tt.code, tt.contains)
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	tests := map[int64]string{0: "0B", 1023: "1023B", 1024: "1.00KiB", 1536: "1.50KiB", 5 << 30: "5.00GiB"}
	for n, want := range tests {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
