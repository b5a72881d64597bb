// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/config"
)

// options are the command line.
type options struct {
	flags       *flag.FlagSet
	configPath  string
	checkConfig bool
	version     bool
}

func parseFlags(args []string) *options {
	o := &options{flags: flag.NewFlagSet("btrfs-vdod", flag.ExitOnError)}
	f := o.flags
	f.StringVar(&o.configPath, "config", config.DefaultPath, "read the configuration from `path`")
	f.BoolVar(&o.checkConfig, "check-config", false, "check the configuration file and exit: 0 if it is valid, 1 if not")
	f.String("socket", api.DefaultSocket, "listen on this Unix socket `path` when not socket-activated (overrides socket in the file)")
	f.String("log-level", "info", "log `level`: debug, info, warn or error (overrides log_level in the file)")
	f.String("state-dir", config.DefaultStateDir, "remember the pools served and the optimizer's totals in `path` (overrides state_dir in the file)")
	f.BoolVar(&o.version, "version", false, "print the version and exit")
	f.Usage = func() {
		fmt.Fprintf(f.Output(), `Usage: btrfs-vdod [flags]

Serve the btrfs-vdo Qubes storage driver on a Unix socket. Only root peers
are served. Logs go to stderr (the journal under systemd). Settings come
from the configuration file, then from these flags.

Flags:
`)
		f.PrintDefaults()
		fmt.Fprintf(f.Output(), "\nExit status: 0 success, 1 failure (bad configuration included), 2 usage.\n")
	}
	_ = f.Parse(args)
	return o
}

// load reads the configuration file and applies the flags given over it.
// A missing file means all defaults when it is the default path, and is
// an error when --config names it.
func (o *options) load() (config.Config, error) {
	cfg, err := config.Load(o.configPath)
	if errors.Is(err, fs.ErrNotExist) && !o.isSet("config") {
		cfg, err = config.Default(), nil
	}
	if err != nil {
		return config.Config{}, err
	}
	o.flags.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "socket":
			cfg.Socket = f.Value.String()
		case "log-level":
			cfg.LogLevel = f.Value.String()
		case "state-dir":
			cfg.StateDir = f.Value.String()
		}
	})
	return cfg, nil
}

func (o *options) isSet(name string) bool {
	set := false
	o.flags.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
