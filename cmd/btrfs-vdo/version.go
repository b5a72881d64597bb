// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"fmt"
	"io"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/version"
)

const versionUsage = `Usage: btrfs-vdo version [--json]

Print the CLI's version, then the daemon's version and protocol.
"btrfs-vdo --version" prints only the CLI's, without asking the daemon.
`

// versions is version --json's output.
type versions struct {
	CLI      string `json:"cli"`
	Daemon   string `json:"daemon"`
	Protocol int    `json:"protocol"`
}

func showVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", versionUsage)
	asJSON := fs.Bool("json", false, "print one JSON object (documented in the README)")
	if err := parseFlags(fs, args, stdout, noArgs); err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintln(stdout, "btrfs-vdo", version.Version)
	}
	var hello api.HelloResult
	if err := call(api.OpHello, api.HelloArgs{Client: "btrfs-vdo " + version.Version}, &hello); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, versions{CLI: version.Version, Daemon: hello.Daemon, Protocol: hello.Protocol})
	}
	fmt.Fprintf(stdout, "btrfs-vdod %s (protocol %d)\n", hello.Daemon, hello.Protocol)
	return nil
}
