// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"encoding/json"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/version"
)

// --version needs no daemon.
func TestVersionFlag(t *testing.T) {
	r := cli(t, "/nonexistent/socket", "--version")
	if r.code != exitOK || r.stdout != "btrfs-vdo "+version.Version+"\n" || r.stderr != "" {
		t.Fatalf("--version: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
}

func TestVersionJSON(t *testing.T) {
	socket := startDaemon(t)
	r := cli(t, socket, "version", "--json")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var v versions
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Daemon != "9.9.9" || v.Protocol != 1 || v.CLI != version.Version {
		t.Fatalf("version --json: %+v, %v in %s", v, err, r.stdout)
	}
}
