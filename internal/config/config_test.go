// SPDX-License-Identifier: GPL-2.0-or-later

package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		file string
		want func(*Config)
	}{
		{"empty file is all defaults", "", func(*Config) {}},
		{"every global key", `
socket = "/run/x/d.sock"
log_level = "debug"
index_size = 1073741824
zstd_level = 9
min_compress_saving = 25.5
job_concurrency = 2
io_priority = "best-effort"
battery_policy = "run"
stop_timeout = "90s"
`, func(c *Config) {
			c.Socket, c.LogLevel, c.IndexSize, c.ZstdLevel = "/run/x/d.sock", "debug", ptr(Size(1<<30)), 9
			c.MinCompressSaving = 25.5
			c.JobConcurrency, c.IOPriority, c.BatteryPolicy = 2, "best-effort", "run"
			c.StopTimeout = Duration(90 * time.Second)
		}},
		{"whole percentage", `min_compress_saving = 25`, func(c *Config) { c.MinCompressSaving = 25 }},
		{"cold pass", "cold_recompress = false\ncold_zstd_level = 9\ncold_after_commits = 0\ncold_after_days = 0.5\n",
			func(c *Config) {
				c.ColdRecompress, c.ColdZstdLevel, c.ColdAfterCommits, c.ColdAfterDays = false, 9, 0, 0.5
			}},
		{"size with unit", `index_size = "2048KiB"`, func(c *Config) { c.IndexSize = ptr(Size(2 << 20)) }},
		{"size with space", `index_size = "2 GiB"`, func(c *Config) { c.IndexSize = ptr(Size(2 << 30)) }},
		{"pool override", `
[pool."/var/lib/qubes-vdo"]
zstd_level = 12
index_size = "64MiB"
`, func(c *Config) {
			c.Pools["/var/lib/qubes-vdo"] = PoolOverride{ZstdLevel: ptr(12), IndexSize: ptr(Size(64 << 20))}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("c.toml", []byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // each error, in order
	}{
		{"unknown key", "zstd_level = 3\nzstd_levl = 4\n", []string{`c.toml:2: zstd_levl: unknown key`}},
		{"unknown table reported once", "[compress]\nlevel = 1\nx = 2\n", []string{`c.toml:1: compress: unknown key`}},
		{"unknown pool key", "[pool.\"/p\"]\nzstd_level = 2\nindex_sise = 5\n", []string{`c.toml:3: pool."/p".index_sise: unknown key`}},
		{"syntax", "socket = \n", []string{`c.toml:1: `}},
		{"wrong type", "zstd_level = \"high\"\n", []string{`c.toml:1: zstd_level: incompatible types`}},
		{"every wrong type, then the other problems", "zstd_level = \"high\"\njob_concurrency = 0\nfrobnicate = 1\nio_priority = 5\n[pool.\"/p\"]\nzstd_level = 99\nindex_size = true\n", []string{
			`c.toml:1: zstd_level: incompatible types`, `c.toml:2: job_concurrency: 0 is not between`, `c.toml:3: frobnicate: unknown key`,
			`c.toml:4: io_priority: incompatible types`, `c.toml:6: pool."/p".zstd_level: 99 is not between`, `c.toml:7: pool."/p".index_size: want bytes`,
		}},
		{"bad values then a syntax error", "zstd_level = \"x\"\nsocket = \n", []string{`c.toml:2: `}},
		{"zstd out of range", "\nzstd_level = 22\n", []string{`c.toml:2: zstd_level: 22 is not between 1 and 15`}},
		{"cold level out of range", "cold_zstd_level = 19\n", []string{`c.toml:1: cold_zstd_level: 19 is not between 1 and 15`}},
		{"cold commits out of range", "cold_after_commits = 51\n", []string{`c.toml:1: cold_after_commits: 51 is not between 0 and 50`}},
		{"cold days negative", "cold_after_days = -1\n", []string{`c.toml:1: cold_after_days: -1 is not between 0 and 3650`}},
		{"saving too low", "min_compress_saving = 0.5\n", []string{`c.toml:1: min_compress_saving: 0.5 is not between 1 and 90`}},
		{"saving too high", "min_compress_saving = 95\n", []string{`c.toml:1: min_compress_saving: 95 is not between 1 and 90`}},
		{"bad size unit", `index_size = "1MB"`, []string{`c.toml:1: index_size: "1MB" is not a size`}},
		{"negative size", `index_size = -1`, []string{`c.toml:1: index_size: -1 is negative`}},
		{"size too small", `index_size = "4KiB"`, []string{`c.toml:1: index_size: 4KiB is below the minimum of 1MiB`}},
		{"explicit zero size", `index_size = 0`, []string{`c.toml:1: index_size: 0B is below the minimum of 1MiB`}},
		{"size not whole buckets", `index_size = 1050000`, []string{`c.toml:1: index_size: 1050000B is not a multiple of 4KiB`}},
		{"pool size", "[pool.\"/p\"]\nindex_size = \"1KiB\"\n", []string{`c.toml:2: pool."/p".index_size: 1KiB is below the minimum of 1MiB`}},
		{"relative socket", `socket = "run/s.sock"`, []string{`c.toml:1: socket: "run/s.sock" is not a clean absolute path`}},
		{"log level", `log_level = "verbose"`, []string{`c.toml:1: log_level: "verbose" is not one of`}},
		{"no jobs", `job_concurrency = 0`, []string{`c.toml:1: job_concurrency: 0 is not between 1 and 64`}},
		{"io priority", `io_priority = "realtime"`, []string{`c.toml:1: io_priority: "realtime" is not one of idle, best-effort`}},
		{"battery policy", `battery_policy = "stop"`, []string{`c.toml:1: battery_policy: "stop" is not one of pause, run`}},
		{"duration without unit", `stop_timeout = 120`, []string{`c.toml:1: stop_timeout: "120" is not a duration`}},
		{"zero duration", `stop_timeout = "0s"`, []string{`c.toml:1: stop_timeout: 0s is not a positive duration`}},
		{"pool not a path", "[pool.vdo]\nzstd_level = 3\n", []string{`c.toml:1: pool.vdo: "vdo" is not a pool's dir_path`}},
		{"pool value", "[pool.\"/p\"]\n\nzstd_level = 0\n", []string{`c.toml:3: pool."/p".zstd_level: 0 is not between 1 and 15`}},
		{"all problems, in line order", "battery_policy = \"x\"\nfoo = 1\nzstd_level = 99\n", []string{
			`c.toml:1: battery_policy:`, `c.toml:2: foo: unknown key`, `c.toml:3: zstd_level:`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.file))
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, want := range tt.want {
				if !strings.Contains(lines[i], want) {
					t.Errorf("error %d = %q, want it to contain %q", i, lines[i], want)
				}
			}
		})
	}
}

// The shipped example lists every key, commented out, with its default:
// as shipped and with the global keys uncommented it must mean defaults.
func TestExampleFileShowsDefaults(t *testing.T) {
	data, err := os.ReadFile("../../packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	var uncommented []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.HasPrefix(line, "#[") {
			break // the per-pool example is not a default
		}
		if key, ok := strings.CutPrefix(line, "#"); ok && strings.Contains(key, " = ") {
			uncommented = append(uncommented, key)
		}
	}
	for name, text := range map[string]string{"as shipped": string(data), "uncommented": strings.Join(uncommented, "")} {
		cfg, err := Parse("config.toml", []byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := Default()
		if name == "uncommented" {
			// index_size's default follows each pool's size: the example
			// shows the size for a 1 TB pool instead.
			want.IndexSize = ptr(Size(128 << 20))
		}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("%s: %+v, want %+v", name, cfg, want)
		}
	}
	fields := reflect.TypeFor[Config]().NumField()
	if len(uncommented) != fields-1 { // all but the pool table
		t.Errorf("example sets %d global keys, Config has %d", len(uncommented), fields-1)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestSizeString(t *testing.T) {
	tests := map[Size]string{0: "0B", 1: "1B", 1536: "1536B", 1 << 20: "1MiB", 3 << 30: "3GiB", 5 << 40: "5TiB"}
	for s, want := range tests {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
		if back, err := parseSize(s.String()); err != nil || back != s {
			t.Errorf("parseSize(%q) = %d, %v", s.String(), back, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
