// SPDX-License-Identifier: GPL-2.0-or-later

// Package config reads btrfs-vdod's configuration file,
// /etc/btrfs-vdo/config.toml. Every key is optional: a key left out takes
// its default, and a file that does not exist at the default path means
// all defaults. Keys that are not known and values out of range are
// refused, naming the key and its line, so a typo never silently falls
// back to a default.
package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// DefaultPath is where the daemon looks for its configuration.
const DefaultPath = "/etc/btrfs-vdo/config.toml"

// DefaultStateDir is where the daemon keeps what it remembers across
// restarts.
const DefaultStateDir = "/var/lib/btrfs-vdo"

// Config is the daemon's configuration. The README's Configuration
// section documents each key; packaging/config.toml lists them with their
// defaults.
type Config struct {
	Socket   string `toml:"socket"`
	LogLevel string `toml:"log_level"`
	// IndexSize is every pool's dedup index size; nil sizes each index
	// by its pool's data.
	IndexSize *Size `toml:"index_size"`
	ZstdLevel int   `toml:"zstd_level"`
	// MinCompressSaving is the percentage of its bytes compression must
	// save for the daemon to store data compressed.
	MinCompressSaving float64 `toml:"min_compress_saving"`
	// ColdRecompress turns the cold pass on: data unchanged for
	// ColdAfterCommits commits of its volume, or ColdAfterDays days, is
	// recompressed at ColdZstdLevel when no other job waits.
	ColdRecompress   bool    `toml:"cold_recompress"`
	ColdZstdLevel    int     `toml:"cold_zstd_level"`
	ColdAfterCommits int     `toml:"cold_after_commits"`
	ColdAfterDays    float64 `toml:"cold_after_days"`
	// JobConcurrency bounds the background jobs running at once, across
	// all pools.
	JobConcurrency int      `toml:"job_concurrency"`
	IOPriority     string   `toml:"io_priority"`
	BatteryPolicy  string   `toml:"battery_policy"`
	StopTimeout    Duration `toml:"stop_timeout"`
	// StateDir holds what the daemon remembers across restarts: the pools
	// it serves and the optimizer's totals and recent outcomes.
	StateDir string `toml:"state_dir"`
	// Pools holds per-pool overrides keyed by the pool's dir_path: the
	// directory is what identifies a pool to the daemon, while its name
	// is only qubesd's label and can change.
	Pools map[string]PoolOverride `toml:"pool"`
}

// PoolOverride replaces global settings for one pool; a nil field keeps
// the global value.
type PoolOverride struct {
	ZstdLevel *int  `toml:"zstd_level"`
	IndexSize *Size `toml:"index_size"`
}

// Values accepted for the keys that take a word.
const (
	IOPriorityIdle       = "idle"
	IOPriorityBestEffort = "best-effort"
	BatteryPause         = "pause"
	BatteryRun           = "run"
)

// Bounds of the numeric keys. btrfs accepts zstd levels 1 to 15; an index
// below 1 MiB would forget new data faster than one commit writes it, and
// it is made of 4 KiB buckets.
const (
	minZstdLevel      = 1
	maxZstdLevel      = 15
	minIndexSize      = 1 << 20
	indexSizeUnit     = 4 << 10
	maxJobConcurrency = 64
	// A bar below a sector of a 128 KiB unit is btrfs's own rule; above
	// nine tenths hardly anything compresses.
	minCompressSavingLo = 1
	minCompressSavingHi = 90
	// The pool state keeps 64 commits of a volume for the cold pass.
	maxColdAfterCommits = 50
	maxColdAfterDays    = 3650
)

// Default returns the configuration used for keys the file leaves out.
// Background work defaults to one job at idle I/O priority, paused on
// battery: a dom0 should not notice it.
func Default() Config {
	return Config{
		Socket:            api.DefaultSocket,
		LogLevel:          "info",
		ZstdLevel:         3,
		MinCompressSaving: 12.5,
		ColdRecompress:    true,
		ColdZstdLevel:     15,
		ColdAfterCommits:  3,
		ColdAfterDays:     7,
		JobConcurrency:    1,
		IOPriority:        IOPriorityIdle,
		BatteryPolicy:     BatteryPause,
		StopTimeout:       Duration(2 * time.Minute),
		StateDir:          DefaultStateDir,
		Pools:             map[string]PoolOverride{},
	}
}

// Load reads the file at path. A missing file is an error wrapping
// fs.ErrNotExist, so the caller decides whether that means defaults.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data, read from path, over the defaults and checks every
// value. All problems are reported at once, each as an *Error.
func Parse(path string, data []byte) (Config, error) {
	cfg, md, errs := decodeAll(path, data)
	if cfg == nil {
		return Config{}, joinErrors(errs)
	}
	for _, key := range unknownKeys(md.Undecoded()) {
		errs = append(errs, &Error{Path: path, Line: keyLine(data, key), Key: key.String(), Msg: "unknown key"})
	}
	for _, p := range cfg.problems() {
		errs = append(errs, &Error{Path: path, Line: keyLine(data, p.key), Key: p.key.String(), Msg: p.msg})
	}
	if err := joinErrors(errs); err != nil {
		return Config{}, err
	}
	return *cfg, nil
}

// decodeAll decodes data over the defaults. The library stops at the
// first value it cannot decode, so each such value's line is blanked and
// the rest decoded again, until all that is left decodes: every bad value
// is reported, not only the first. A syntax error stops it (nil Config):
// what follows cannot be read.
func decodeAll(path string, data []byte) (*Config, toml.MetaData, []*Error) {
	var errs []*Error
	for range bytes.Count(data, []byte("\n")) + 2 {
		if _, err := toml.Decode(string(data), &map[string]any{}); err != nil {
			if len(errs) > 0 {
				// A value spread over several lines, partly blanked:
				// report what was found, not the damage done here.
				return nil, toml.MetaData{}, errs
			}
			return nil, toml.MetaData{}, []*Error{decodeError(path, err)}
		}
		cfg := Default()
		md, err := toml.Decode(string(data), &cfg)
		if err == nil {
			return &cfg, md, errs
		}
		e := decodeError(path, err)
		errs = append(errs, e)
		if e.Line == 0 {
			return nil, toml.MetaData{}, errs
		}
		data = blankLine(data, e.Line)
	}
	return nil, toml.MetaData{}, errs
}

// blankLine turns line n (from 1) of data into a comment.
func blankLine(data []byte, n int) []byte {
	lines := bytes.Split(data, []byte("\n"))
	lines[n-1] = []byte("#")
	return bytes.Join(lines, []byte("\n"))
}

type problem struct {
	key toml.Key
	msg string
}

// problems lists every value out of its range.
func (c Config) problems() []problem {
	var ps []problem
	add := func(msg string, key ...string) { ps = append(ps, problem{key: key, msg: msg}) }
	if !isCleanAbs(c.Socket) {
		add(fmt.Sprintf("%q is not a clean absolute path", c.Socket), "socket")
	}
	if !isCleanAbs(c.StateDir) || c.StateDir == "/" {
		add(fmt.Sprintf("%q is not a clean absolute path below /", c.StateDir), "state_dir")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		add(fmt.Sprintf("%q is not one of debug, info, warn, error", c.LogLevel), "log_level")
	}
	if c.IndexSize != nil {
		if msg := checkIndexSize(*c.IndexSize); msg != "" {
			add(msg, "index_size")
		}
	}
	if msg := checkZstdLevel(c.ZstdLevel); msg != "" {
		add(msg, "zstd_level")
	}
	if c.MinCompressSaving < minCompressSavingLo || c.MinCompressSaving > minCompressSavingHi {
		add(fmt.Sprintf("%g is not between %d and %d", c.MinCompressSaving, minCompressSavingLo, minCompressSavingHi), "min_compress_saving")
	}
	if msg := checkZstdLevel(c.ColdZstdLevel); msg != "" {
		add(msg, "cold_zstd_level")
	}
	if c.ColdAfterCommits < 0 || c.ColdAfterCommits > maxColdAfterCommits {
		add(fmt.Sprintf("%d is not between 0 and %d", c.ColdAfterCommits, maxColdAfterCommits), "cold_after_commits")
	}
	if c.ColdAfterDays < 0 || c.ColdAfterDays > maxColdAfterDays {
		add(fmt.Sprintf("%g is not between 0 and %d", c.ColdAfterDays, maxColdAfterDays), "cold_after_days")
	}
	if c.JobConcurrency < 1 || c.JobConcurrency > maxJobConcurrency {
		add(fmt.Sprintf("%d is not between 1 and %d", c.JobConcurrency, maxJobConcurrency), "job_concurrency")
	}
	if c.IOPriority != IOPriorityIdle && c.IOPriority != IOPriorityBestEffort {
		add(fmt.Sprintf("%q is not one of %s, %s", c.IOPriority, IOPriorityIdle, IOPriorityBestEffort), "io_priority")
	}
	if c.BatteryPolicy != BatteryPause && c.BatteryPolicy != BatteryRun {
		add(fmt.Sprintf("%q is not one of %s, %s", c.BatteryPolicy, BatteryPause, BatteryRun), "battery_policy")
	}
	if c.StopTimeout <= 0 {
		add(fmt.Sprintf("%s is not a positive duration", c.StopTimeout), "stop_timeout")
	}
	for dir, o := range c.Pools {
		if !isCleanAbs(dir) || dir == "/" {
			add(fmt.Sprintf("%q is not a pool's dir_path (a clean absolute path)", dir), "pool", dir)
		}
		if o.ZstdLevel != nil {
			if msg := checkZstdLevel(*o.ZstdLevel); msg != "" {
				add(msg, "pool", dir, "zstd_level")
			}
		}
		if o.IndexSize != nil {
			if msg := checkIndexSize(*o.IndexSize); msg != "" {
				add(msg, "pool", dir, "index_size")
			}
		}
	}
	return ps
}

func checkZstdLevel(n int) string {
	if n < minZstdLevel || n > maxZstdLevel {
		return fmt.Sprintf("%d is not between %d and %d", n, minZstdLevel, maxZstdLevel)
	}
	return ""
}

func checkIndexSize(s Size) string {
	switch {
	case s < minIndexSize:
		return fmt.Sprintf("%s is below the minimum of %s", s, Size(minIndexSize))
	case s%indexSizeUnit != 0:
		return fmt.Sprintf("%s is not a multiple of %s", s, Size(indexSizeUnit))
	}
	return ""
}

func isCleanAbs(p string) bool { return filepath.IsAbs(p) && filepath.Clean(p) == p }
