// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"flag"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
	"github.com/btrfs-vdo/btrfs-vdo/internal/mantest"
)

// btrfs-vdod(8) has an item for every flag and for the environment
// variables the daemon reads.
func TestManPageCoversDaemon(t *testing.T) {
	page := mantest.Load(t, "btrfs-vdod.8")
	options := page.Section("OPTIONS")
	n := 0
	parseFlags(nil).flags.VisitAll(func(f *flag.Flag) {
		n++
		if !mantest.HasTag(options, "--"+f.Name) {
			t.Errorf("btrfs-vdod.8: OPTIONS has no item for --%s", f.Name)
		}
	})
	if n < 2 {
		t.Fatalf("found %d flags", n)
	}
	env := page.Section("ENVIRONMENT")
	for _, name := range []string{"JOURNAL_STREAM", "LISTEN_FDS", "NOTIFY_SOCKET", "DBUS_SYSTEM_BUS_ADDRESS", "GOMEMLIMIT", failpoint.Env} {
		if !mantest.HasTag(env, name) {
			t.Errorf("btrfs-vdod.8: ENVIRONMENT has no item for %s", name)
		}
	}
	for _, section := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "SOCKET", "SIGNALS", "LOGGING", "D-BUS", "EXIT STATUS", "FILES", "SEE ALSO"} {
		if page.Section(section) == nil {
			t.Errorf("btrfs-vdod.8: no section %s", section)
		}
	}
}
