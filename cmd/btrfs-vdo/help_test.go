// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"strings"
	"testing"
)

// Help is asked for, so it goes to stdout and succeeds, whichever way it
// is asked; every command has it.
func TestHelpOnStdout(t *testing.T) {
	cases := [][]string{{"--help"}, {"-h"}, {"help"}}
	for _, c := range commands {
		cases = append(cases, []string{c.name, "--help"}, []string{c.name, "-h"}, []string{"help", c.name})
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := cli(t, "", args...)
			want := "Usage: btrfs-vdo"
			if len(args) == 2 {
				want += " " + commandOf(args)
			}
			if r.code != exitOK || r.stderr != "" || !strings.HasPrefix(r.stdout, want) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 0 and stdout starting %q", r.code, r.stdout, r.stderr, want)
			}
		})
	}
}

func commandOf(args []string) string {
	if args[0] == "help" {
		return args[1]
	}
	return args[0]
}

// Mistakes in the command line exit 2 with the reason on stderr and
// nothing on stdout, before asking the daemon anything.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"status", "extra"}, `status takes no arguments; unexpected "extra"`},
		{[]string{"jobs", "extra"}, `jobs takes no arguments; unexpected "extra"`},
		{[]string{"version", "a", "b"}, `version takes no arguments; unexpected "a b"`},
		{[]string{"stats", "a", "b"}, `stats takes at most one TARGET; unexpected "b"`},
		{[]string{"optimize"}, "optimize takes one TARGET"},
		{[]string{"optimize", "a", "b"}, `optimize takes one TARGET; unexpected "b"`},
		{[]string{"compress"}, "compress takes at least one PATH"},
		{[]string{"compress", "--level", "19", "/"}, `invalid value "19" for flag -level: 19 is not between 1 and 15`},
		{[]string{"compress", "--level", "0", "/"}, "0 is not between 1 and 15"},
		{[]string{"compress", "--level=-3", "/"}, "-3 is not between 1 and 15"},
		{[]string{"compress", "--level", "fast", "/"}, `"fast" is not a whole number`},
		{[]string{"jobs", "--wait=maybe"}, "invalid boolean value"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := cli(t, "/nonexistent/socket", tt.args...)
			if r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and stderr containing %q", r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
}

// Flags may follow the arguments, as most CLIs allow; after "--" all is
// an argument.
func TestFlagsAfterArguments(t *testing.T) {
	r := cli(t, "/nonexistent/socket", "optimize", "pool", "--no-wait", "--full")
	if r.code != exitFailure || !strings.Contains(r.stderr, "not reachable") {
		t.Fatalf("flags after the target: exit %d, %s", r.code, r.stderr)
	}
	r = cli(t, "/nonexistent/socket", "stats", "--", "--json")
	if r.code != exitFailure || !strings.Contains(r.stderr, "not reachable") {
		t.Fatalf("-- then a target: exit %d, %s", r.code, r.stderr)
	}
}
