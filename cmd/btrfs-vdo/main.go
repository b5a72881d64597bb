// SPDX-License-Identifier: GPL-2.0-or-later

// Command btrfs-vdo is the administrator's view of btrfs-vdod: what it
// serves and what it has done.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/version"
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitFailure = 1 // the daemon answered with an error, or is unreachable
	exitUsage   = 2
	// exitInterrupted: Ctrl-C while waiting for jobs, which go on.
	exitInterrupted = 130
)

// command is one of the CLI's commands: one file each, with its usage.
type command struct {
	name     string
	synopsis string // the flags and arguments, as in the usage
	summary  string
	run      func(args []string, stdout, stderr io.Writer) error
}

// commands lists the commands in the order the usage shows them; a new
// command is one more line here.
var commands = []command{
	{"status", "[--json] [--bytes]", "show the daemon's version, uptime and pools", status},
	{"stats", "[--json] [--bytes] [TARGET]", "space per volume, VM and pool, compsize-style", stats},
	{"optimize", "[--full|--cold] [--no-wait] [--json] [--bytes] TARGET", "dedup and compress TARGET's volumes, unsharing nothing", optimize},
	{"jobs", "[--json] [--wait] [--bytes]", "the optimizer's jobs and totals", jobs},
	{"compress", "[--level N] [--json] [--bytes] PATH...", "compress dom0 files on btrfs without unsharing", compress},
	{"estimate", "[--sample SIZE|FRACTION] [--seed N] [--level N] [--json] [--bytes] DIR", "estimate what optimize --full would save in a pool directory (read-only)", estimate},
	{"version", "[--json]", "print the CLI's and the daemon's versions", showVersion},
}

// daemonSocket is the --socket flag, read by newClient.
var daemonSocket string

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usageText() string {
	var b strings.Builder
	b.WriteString("Usage: btrfs-vdo [--socket PATH] COMMAND [flags]\n       btrfs-vdo --version | --help | help COMMAND\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n            %s\n", c.name, c.synopsis, c.summary)
	}
	b.WriteString(`
TARGET is a pool the daemon knows (its name or directory), a VM's name, or
POOL:VID. "btrfs-vdo help COMMAND" describes each command.

The socket defaults to $` + api.SocketEnv + `, then ` + api.DefaultSocket + `.
Exit status: 0 success, 1 failure (daemon error or unreachable, a failed
job), 2 usage (a bad flag or argument, or a TARGET the daemon does not
know), 130 interrupted while waiting for jobs (which go on).
`)
	return b.String()
}

// globalFlags returns the flags that go before the command.
func globalFlags() (global *flag.FlagSet, printVersion *bool) {
	global = newFlags("btrfs-vdo", usageText())
	global.StringVar(&daemonSocket, "socket", "", "daemon socket `path`")
	return global, global.Bool("version", false, "print the CLI's version and exit")
}

func run(args []string, stdout, stderr io.Writer) int {
	global, printVersion := globalFlags()
	if err := parseOnce(global, args, stdout); err != nil {
		return exitWith(err, "", stderr)
	}
	rest := global.Args()
	switch {
	case *printVersion:
		fmt.Fprintln(stdout, "btrfs-vdo", version.Version)
		return exitOK
	case len(rest) == 0:
		fmt.Fprint(stderr, usageText())
		return exitUsage
	case rest[0] == "help":
		return help(rest[1:], stdout, stderr)
	}
	cmd, ok := findCommand(rest[0])
	if !ok {
		return exitWith(usageError{fmt.Errorf("unknown command %q", rest[0])}, "", stderr)
	}
	return exitWith(cmd.run(rest[1:], stdout, stderr), cmd.name, stderr)
}

// help prints the usage, or a command's, to stdout.
func help(args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		fmt.Fprint(stdout, usageText())
		return exitOK
	case 1:
		if cmd, ok := findCommand(args[0]); ok {
			return exitWith(cmd.run([]string{"--help"}, stdout, stderr), cmd.name, stderr)
		}
		return exitWith(usageError{fmt.Errorf("unknown command %q", args[0])}, "", stderr)
	}
	return exitWith(usageError{errors.New("help takes at most one COMMAND")}, "", stderr)
}

func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// exitWith reports err from command cmd ("" for none) on stderr and
// returns the exit status it stands for.
func exitWith(err error, cmd string, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	msg, code := explain(err)
	fmt.Fprintln(stderr, "btrfs-vdo:", msg)
	var usageErr usageError
	if errors.As(err, &usageErr) {
		hint := "btrfs-vdo --help"
		if cmd != "" {
			hint = "btrfs-vdo help " + cmd
		}
		fmt.Fprintf(stderr, "Run %q for usage.\n", hint)
	}
	return code
}
