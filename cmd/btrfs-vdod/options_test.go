// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/config"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte("socket = \"/run/a.sock\"\nlog_level = \"warn\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.toml")
	tests := []struct {
		name        string
		args        []string
		defaultPath string // stands in for /etc/btrfs-vdo/config.toml
		socket      string
		level       string
		err         string
	}{
		{"missing default file means defaults", nil, missing, config.Default().Socket, "info", ""},
		{"default file read", nil, file, "/run/a.sock", "warn", ""},
		{"flags override the file", []string{"--socket", "/run/b.sock", "--log-level", "debug"}, file, "/run/b.sock", "debug", ""},
		{"explicit file read", []string{"--config", file}, missing, "/run/a.sock", "warn", ""},
		{"missing explicit file is an error", []string{"--config", missing}, file, "", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := parseFlags(tt.args)
			if !o.isSet("config") {
				o.configPath = tt.defaultPath
			}
			cfg, err := o.load()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || cfg.Socket != tt.socket || cfg.LogLevel != tt.level {
				t.Fatalf("socket %q, level %q, %v; want %q, %q", cfg.Socket, cfg.LogLevel, err, tt.socket, tt.level)
			}
		})
	}
}

func TestIsJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{
		"":                                     false,
		"garbage":                              false,
		fmt.Sprintf("%d:%d", st.Dev, st.Ino):   true,
		fmt.Sprintf("%d:%d", st.Dev, st.Ino+1): false,
	}
	for env, want := range tests {
		if got := isJournal(f, env); got != want {
			t.Errorf("isJournal(JOURNAL_STREAM=%q) = %v, want %v", env, got, want)
		}
	}
}

// Under the journal (JOURNAL_STREAM names stderr) each line begins with
// its syslog priority and has no time; otherwise lines are plain text.
func TestNewLogger(t *testing.T) {
	levels := []struct {
		level    slog.Level
		priority string
	}{
		{slog.LevelDebug, "<7>"},
		{slog.LevelInfo, "<6>"},
		{slog.LevelInfo + 2, "<6>"},
		{slog.LevelWarn, "<4>"},
		{slog.LevelError, "<3>"},
		{slog.LevelError + 4, "<3>"},
	}
	modes := []struct {
		name    string
		stream  func(stderr *os.File) string // JOURNAL_STREAM
		journal bool
	}{
		{"journal", devIno, true},
		{"unset", func(*os.File) string { return "" }, false},
		{"another stream", func(*os.File) string { return devIno(os.Stdin) }, false},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			log, err := newLogger(w, "debug", isJournal(w, m.stream(w)))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range levels {
				log.With("pool", "vdo").Log(context.Background(), l.level, "committed", "vid", "appvms/work/private")
			}
			w.Close()
			out, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != len(levels) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(levels), out)
			}
			for i, l := range levels {
				want := fmt.Sprintf("level=%s msg=committed pool=vdo vid=appvms/work/private", l.level)
				if m.journal {
					want = l.priority + want
				}
				if got := lines[i]; m.journal && got != want || !m.journal && !(strings.HasPrefix(got, "time=") && strings.HasSuffix(got, " "+want)) {
					t.Errorf("level %s: line %q, want %q", l.level, got, want)
				}
			}
		})
	}
	if _, err := newLogger(&bytes.Buffer{}, "loud", false); err == nil {
		t.Error("level loud accepted")
	}
}

// Lines logged at once from many goroutines each keep their own priority.
func TestJournalPrioritiesConcurrent(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "debug", true)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			level := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}[i%4]
			log.Log(context.Background(), level, "request")
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 200 {
		t.Fatalf("%d lines, want 200", len(lines))
	}
	for _, line := range lines {
		var level slog.Level
		prio, rest, _ := strings.Cut(line, "level=")
		text, _, _ := strings.Cut(rest, " ")
		if err := level.UnmarshalText([]byte(text)); err != nil || prio != journalPriority(level) {
			t.Errorf("line %q", line)
		}
	}
}

// devIno is f's "device:inode", as systemd writes JOURNAL_STREAM.
func devIno(f *os.File) string {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestPoolZstdLevels(t *testing.T) {
	nine := 9
	cfg := config.Default()
	cfg.Pools = map[string]config.PoolOverride{
		"/var/lib/qubes-vdo": {ZstdLevel: &nine},
		"/srv/other":         {},
	}
	got := poolZstdLevels(cfg)
	if len(got) != 1 || got["/var/lib/qubes-vdo"] != 9 {
		t.Fatalf("poolZstdLevels = %v", got)
	}
}

func TestIndexSizes(t *testing.T) {
	global, own := config.Size(256<<20), config.Size(1<<30)
	for _, tc := range []struct {
		name   string
		global *config.Size
		want   optimizer.IndexSizes
	}{
		{"sized for the filesystem unless overridden", nil, optimizer.IndexSizes{Pools: map[string]uint64{"/var/lib/qubes-vdo": 1 << 30}}},
		{"global and override", &global, optimizer.IndexSizes{Default: 256 << 20, Pools: map[string]uint64{"/var/lib/qubes-vdo": 1 << 30}}},
	} {
		cfg := config.Default()
		cfg.IndexSize = tc.global
		cfg.Pools = map[string]config.PoolOverride{
			"/var/lib/qubes-vdo": {IndexSize: &own},
			"/srv/other":         {},
		}
		if got := indexSizes(cfg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: indexSizes = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestFatalText(t *testing.T) {
	err := errors.Join(errors.New("config.toml:3: zstd_level: 22 is not between 1 and 15"),
		errors.New("config.toml:4: job_concurrency: 0 is not between 1 and 64"))
	tests := []struct {
		journal bool
		want    string
	}{
		{false, "btrfs-vdod: config.toml:3: zstd_level: 22 is not between 1 and 15\nconfig.toml:4: job_concurrency: 0 is not between 1 and 64\n"},
		{true, "<3>btrfs-vdod: config.toml:3: zstd_level: 22 is not between 1 and 15\n<3>config.toml:4: job_concurrency: 0 is not between 1 and 64\n"},
	}
	for _, tt := range tests {
		if got := fatalText(err, tt.journal); got != tt.want {
			t.Errorf("journal %v: %q, want %q", tt.journal, got, tt.want)
		}
	}
}
