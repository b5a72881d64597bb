// SPDX-License-Identifier: GPL-2.0-or-later

// Package failpoint lets the crash tests kill the daemon at named points
// between the steps of an operation, as a power loss would.
//
// A failpoint is armed only by the test-only environment variable Env,
// read once when the process starts: a name, or a comma-separated list of
// names. Unarmed, Hit costs one lookup in an empty map.
//
// Every failpoint is a failpoint.Hit call with a string literal, and
// names.txt lists them all; a test keeps the two in step, and the crash
// test (tests/test_crash.py) walks every name in names.txt.
package failpoint

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Env names the environment variable that arms failpoints.
const Env = "BTRFS_VDO_FAILPOINT"

var armed = parse(os.Getenv(Env))

//go:embed names.txt
var namesFile string

func parse(value string) map[string]bool {
	set := map[string]bool{}
	for _, name := range strings.Split(value, ",") {
		if name = strings.TrimSpace(name); name != "" {
			set[name] = true
		}
	}
	return set
}

// Hit kills the process with SIGKILL if the failpoint name is armed, so
// nothing after this point runs: no deferred cleanup, no reply.
func Hit(name string) {
	if !armed[name] {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint %s: killing the process\n", name)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

// Names lists every failpoint in the code, as names.txt records them.
func Names() []string {
	return strings.Fields(namesFile)
}
