// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/client"
)

const statusUsage = `Usage: btrfs-vdo status [--json] [--bytes]

Show the daemon's version, uptime and requests served, and the pools it
knows: those set up through it or used by qubesd since it started, and
any a TARGET named since.
`

func status(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", statusUsage)
	var out outputFlags
	out.register(fs)
	if err := parseFlags(fs, args, stdout, noArgs); err != nil {
		return err
	}
	var st api.StatusResult
	if err := call(api.OpStatus, api.StatusArgs{}, &st); err != nil {
		return err
	}
	slices.SortStableFunc(st.Pools, func(a, b api.PoolStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.DirPath, b.DirPath))
	})
	if out.json {
		return writeJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "btrfs-vdod %s (protocol %d), up %s, %d requests\n",
		st.Daemon, st.Protocol, time.Duration(st.UptimeSeconds)*time.Second, st.Requests)
	if len(st.Pools) == 0 {
		fmt.Fprintln(stdout, "no pool known yet: qubesd opens each pool as it uses it")
		return nil
	}
	sz := out.sizes()
	t := newTable("llrrr", "POOL", "DIRECTORY", "SIZE", "USED", "COMMITS")
	for _, p := range st.Pools {
		t.add(p.Name, p.DirPath, sz.signed(p.SizeBytes), sz.signed(p.UsedBytes), fmt.Sprint(p.Commits))
	}
	return t.write(stdout)
}

// newClient is the daemon's client for --socket, $BTRFS_VDO_SOCKET or the
// default socket.
func newClient() *client.Client { return client.New(daemonSocket) }

// call runs one request that answers at once.
func call(op api.Op, args, result any) error {
	return callWithin(30*time.Second, op, args, result)
}

func callWithin(timeout time.Duration, op api.Op, args, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return newClient().Call(ctx, op, args, result)
}

// writeJSON prints v, always one object, indented.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
