// Command btrfs-vdod is the btrfs-vdo helper daemon: it serves qubesd's
// btrfs-vdo storage driver on a Unix socket and does all work on the pool's
// image files. It runs in the foreground and logs to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/internal/server"
	"github.com/btrfs-vdo/btrfs-vdo/internal/version"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "btrfs-vdod:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("btrfs-vdod", flag.ExitOnError)
	socket := fs.String("socket", api.DefaultSocket, "listen on this Unix socket `path`")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: btrfs-vdod [flags]

Serve the btrfs-vdo Qubes storage driver on a Unix socket. Only root peers
are served. Logs go to stderr (the journal under systemd).

Flags:
`)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println("btrfs-vdod", version.Version)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ln, err := listener(*socket, log)
	if err != nil {
		return err
	}
	pools := pool.NewRegistry(log, nil)
	defer pools.Close()
	srv := &server.Server{Pools: pools, Log: log, Version: version.Version, AllowUID: 0}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("listening", "socket", ln.Addr().String(), "version", version.Version)
	notify(log, daemon.SdNotifyReady)
	context.AfterFunc(ctx, func() { notify(log, daemon.SdNotifyStopping) })
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}

// listener uses the socket systemd passes (socket activation) or, without
// systemd, listens on path itself.
func listener(path string, log *slog.Logger) (net.Listener, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("sockets from systemd: %w", err)
	}
	switch len(lns) {
	case 0:
		return server.Listen(path)
	case 1:
		log.Debug("using the socket passed by systemd")
		return lns[0], nil
	default:
		return nil, fmt.Errorf("systemd passed %d sockets, want 1", len(lns))
	}
}

// notify tells systemd about the daemon's state; outside systemd it does
// nothing.
func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("notify systemd", "state", state, "err", err)
	}
}
