package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/config"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
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

func TestNewLogger(t *testing.T) {
	for _, journal := range []bool{false, true} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, "debug", journal)
		if err != nil {
			t.Fatal(err)
		}
		log.Debug("committed", "vid", "appvms/work/private")
		line := buf.String()
		if hasTime := strings.HasPrefix(line, "time="); hasTime == journal {
			t.Errorf("journal %v: line %q", journal, line)
		}
		if !strings.Contains(line, `level=DEBUG msg=committed vid=appvms/work/private`) {
			t.Errorf("journal %v: line %q", journal, line)
		}
	}
	if _, err := newLogger(&bytes.Buffer{}, "loud", false); err == nil {
		t.Error("level loud accepted")
	}
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
		want   pool.IndexSizes
	}{
		{"sized for the filesystem unless overridden", nil, pool.IndexSizes{Pools: map[string]uint64{"/var/lib/qubes-vdo": 1 << 30}}},
		{"global and override", &global, pool.IndexSizes{Default: 256 << 20, Pools: map[string]uint64{"/var/lib/qubes-vdo": 1 << 30}}},
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
