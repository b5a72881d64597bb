// Command btrfs-vdo is the administrator's view of btrfs-vdod: what it
// serves and what it has done.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/client"
	"github.com/btrfs-vdo/btrfs-vdo/internal/version"
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitFailure = 1 // the daemon answered with an error, or is unreachable
	exitUsage   = 2
)

const usageText = `Usage: btrfs-vdo [--socket PATH] COMMAND [flags]

Commands:
  status [--json]           show the daemon's version, uptime and pools
  stats [--json] [TARGET]   space per volume, VM and pool, compsize-style
  optimize [--full] [--no-wait] [--json] TARGET
                            dedup and compress TARGET's volumes, unsharing nothing, and wait
  jobs [--json] [--wait]    the optimiser's jobs and totals
  compress [--level N] [--json] PATH...
                            compress dom0 files on btrfs without unsharing
  estimate [--json] DIR     estimate what optimize --full would save in a pool directory (read-only)
  version                   print the CLI's and the daemon's versions

TARGET is a pool's name or directory, a VM's name, or POOL:VID.
"btrfs-vdo COMMAND --help" describes each command.

The socket defaults to $BTRFS_VDO_SOCKET, then ` + api.DefaultSocket + `.
Exit status: 0 success, 1 failure (daemon error or unreachable), 2 usage.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("btrfs-vdo", flag.ContinueOnError)
	global.SetOutput(stderr)
	socket := global.String("socket", "", "daemon socket `path`")
	global.Usage = func() { fmt.Fprint(stderr, usageText) }
	if err := global.Parse(args); err != nil {
		return exitUsage
	}
	if global.NArg() == 0 {
		global.Usage()
		return exitUsage
	}
	c := client.New(*socket)
	cmd, rest := global.Arg(0), global.Args()[1:]
	var err error
	switch cmd {
	case "status":
		err = status(c, rest, stdout, stderr)
	case "stats":
		err = stats(c, rest, stdout, stderr)
	case "optimize":
		err = optimize(c, rest, stdout, stderr)
	case "jobs":
		err = jobs(c, rest, stdout, stderr)
	case "compress":
		err = compress(rest, stdout, stderr)
	case "estimate":
		err = estimate(rest, stdout, stderr)
	case "version":
		err = showVersion(c, rest, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) > 0 { // help COMMAND is COMMAND --help
			return run([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "btrfs-vdo: unknown command %q\n\n%s", cmd, usageText)
		return exitUsage
	}
	var usageErr usageError
	switch {
	case errors.Is(err, flag.ErrHelp): // COMMAND --help printed its usage
		return exitOK
	case errors.As(err, &usageErr):
		fmt.Fprintln(stderr, "btrfs-vdo:", err)
		return exitUsage
	case err != nil:
		fmt.Fprintln(stderr, "btrfs-vdo:", err)
		return exitFailure
	}
	return exitOK
}

type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// newFlags returns the flag set of command name, which prints usage and
// then the flags on --help and on a bad flag.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args with fs; a bad flag is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	return nil
}

func status(c *client.Client, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", "Usage: btrfs-vdo status [--json]\n\nShow the daemon's version, uptime, requests served and pools.\n", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var st api.StatusResult
	if err := call(c, api.OpStatus, api.StatusArgs{}, &st); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "btrfs-vdod %s (protocol %d), up %s, %d requests\n",
		st.Daemon, st.Protocol, time.Duration(st.UptimeSeconds)*time.Second, st.Requests)
	if len(st.Pools) == 0 {
		fmt.Fprintln(stdout, "no pool used since the daemon started")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tDIRECTORY\tSIZE\tUSED\tCOMMITS")
	for _, p := range st.Pools {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", p.Name, p.DirPath, humanBytes(p.SizeBytes), humanBytes(p.UsedBytes), p.Commits)
	}
	return tw.Flush()
}

func showVersion(c *client.Client, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "Usage: btrfs-vdo version [--json]\n\nPrint the CLI's version, then the daemon's version and protocol.\n", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*asJSON {
		fmt.Fprintln(stdout, "btrfs-vdo", version.Version)
	}
	var hello api.HelloResult
	if err := call(c, api.OpHello, api.HelloArgs{Client: "btrfs-vdo " + version.Version}, &hello); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, versions{CLI: version.Version, Daemon: hello.Daemon, Protocol: hello.Protocol})
	}
	fmt.Fprintf(stdout, "btrfs-vdod %s (protocol %d)\n", hello.Daemon, hello.Protocol)
	return nil
}

// versions is version --json's output.
type versions struct {
	CLI      string `json:"cli"`
	Daemon   string `json:"daemon"`
	Protocol int    `json:"protocol"`
}

func call(c *client.Client, op api.Op, args, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Call(ctx, op, args, result)
}

// humanBytes renders n in binary units, as btrfs-progs does.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
