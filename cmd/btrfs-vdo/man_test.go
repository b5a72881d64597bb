// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"flag"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/mantest"
)

// usageCommands lists the commands of the command table.
func usageCommands() []string {
	var out []string
	for _, c := range commands {
		out = append(out, c.name)
	}
	return out
}

// commandFlags lists the flags a command's --help prints.
func commandFlags(t *testing.T, cmd string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{cmd, "--help"}, &out, &errOut); code != exitOK {
		t.Fatalf("%s --help: exit %d", cmd, code)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(out.String()+errOut.String(), -1) {
		flags = append(flags, m[1])
	}
	return flags
}

// btrfs-vdo(8) has a subsection for every command, an item for each of
// its flags, and items for the global flags, the exit statuses and the
// environment; and it documents no command the CLI lacks.
func TestManPageCoversCLI(t *testing.T) {
	page := mantest.Load(t, "btrfs-vdo.8")
	commandsSection := page.Section("COMMANDS")
	commands := usageCommands()
	if len(commands) < 2 {
		t.Fatalf("found %d commands in the usage text", len(commands))
	}
	for _, cmd := range commands {
		sub := mantest.Subsection(commandsSection, cmd)
		if sub == nil {
			t.Errorf("btrfs-vdo.8: no subsection for the command %s", cmd)
			continue
		}
		flags := commandFlags(t, cmd)
		if len(flags) == 0 {
			t.Errorf("%s --help lists no flags", cmd)
		}
		for _, f := range flags {
			if !mantest.HasTag(sub, "--"+f) {
				t.Errorf("btrfs-vdo.8: command %s: no item for its flag --%s", cmd, f)
			}
		}
	}
	for _, heading := range mantest.Headings(commandsSection) {
		if !slices.Contains(commands, heading) && heading != "help" {
			t.Errorf("btrfs-vdo.8 documents %q, which is no command", heading)
		}
	}
	global, _ := globalFlags()
	global.VisitAll(func(f *flag.Flag) {
		if !mantest.HasTag(page.Section("OPTIONS"), "--"+f.Name) {
			t.Errorf("btrfs-vdo.8: OPTIONS has no item for the global flag --%s", f.Name)
		}
	})
	for _, code := range []int{exitOK, exitFailure, exitUsage, exitInterrupted} {
		if !mantest.HasTag(page.Section("EXIT STATUS"), strconv.Itoa(code)) {
			t.Errorf("btrfs-vdo.8: EXIT STATUS has no item for %d", code)
		}
	}
	if !mantest.HasTag(page.Section("ENVIRONMENT"), api.SocketEnv) {
		t.Errorf("btrfs-vdo.8: ENVIRONMENT has no item for %s", api.SocketEnv)
	}
	synopsis := strings.Join(page.Section("SYNOPSIS"), "\n")
	for _, cmd := range append(commands, "help") {
		if !strings.Contains(synopsis, cmd) {
			t.Errorf("btrfs-vdo.8: SYNOPSIS lacks %s", cmd)
		}
	}
}
