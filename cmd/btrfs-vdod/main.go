// SPDX-License-Identifier: GPL-2.0-or-later

// Command btrfs-vdod is the btrfs-vdo helper daemon: it serves qubesd's
// btrfs-vdo storage driver on a Unix socket and does all work on the pool's
// image files. It runs in the foreground and logs to stderr. Its settings
// come from /etc/btrfs-vdo/config.toml, then from its flags.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/internal/config"
	"github.com/btrfs-vdo/btrfs-vdo/internal/server"
	"github.com/btrfs-vdo/btrfs-vdo/internal/version"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprint(os.Stderr, fatalText(err, isJournal(os.Stderr, os.Getenv("JOURNAL_STREAM"))))
		os.Exit(1)
	}
}

func run() error {
	opts := parseFlags(os.Args[1:])
	if opts.version {
		fmt.Println("btrfs-vdod", version.Version)
		return nil
	}
	cfg, err := opts.load()
	if err != nil {
		return err
	}
	if opts.checkConfig {
		fmt.Println(opts.configPath + ": OK")
		return nil
	}
	log, err := newLogger(os.Stderr, cfg.LogLevel, isJournal(os.Stderr, os.Getenv("JOURNAL_STREAM")))
	if err != nil {
		return err
	}
	return serve(cfg, log)
}

// serve wires the daemon's parts together and serves until SIGTERM or
// SIGINT.
func serve(cfg config.Config, log *slog.Logger) error {
	ln, err := listener(cfg.Socket, log)
	if err != nil {
		return err
	}
	inhibitor := bus.NewInhibitor(nil, log) // on the bus once busLink connects it
	announcer := &busAnnouncer{log: log}
	sched := optimizer.NewScheduler(optimizer.SchedulerConfig{
		Workers: cfg.JobConcurrency, ZstdLevel: cfg.ZstdLevel, PoolZstdLevels: poolZstdLevels(cfg),
		IdleIO: cfg.IOPriority == config.IOPriorityIdle, MinCompressSaving: cfg.MinCompressSaving / 100,
		Cold: optimizer.ColdPolicy{Enabled: cfg.ColdRecompress, Level: cfg.ColdZstdLevel,
			AfterCommits: cfg.ColdAfterCommits, AfterAge: time.Duration(cfg.ColdAfterDays * 24 * float64(time.Hour))},
		IndexSizes: indexSizes(cfg), OnIndexSized: memoryReport(log),
	}, log, announcer.jobDone)
	pools, err := pool.NewRegistry(pool.Config{
		Log: log, Writing: announcer.writing(inhibitor.Writing), Optimizer: sched, StateDir: cfg.StateDir,
	})
	if err != nil {
		return err
	}
	defer pools.Close()
	// Pending jobs resume now, not when a request first names their pool.
	pools.Restore()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	link := &busLink{log: log, version: version.Version, inhibitor: inhibitor, announcer: announcer,
		status: daemonStatus{pools: pools, jobs: sched}}
	if cfg.BatteryPolicy == config.BatteryPause {
		link.battery = sched
	}
	// The bus stays until the requests in flight are done: the shutdown
	// inhibitor matters most while the machine shuts down.
	defer link.join(sched)()
	// Jobs stop at their next chunk and keep their place for the next start.
	served := pools.Serve(ctx)
	defer func() {
		stop()
		served()
	}()
	srv := &server.Server{Pools: server.PoolRegistry(pools), Log: log, Version: version.Version, AllowUID: 0,
		StopTimeout: time.Duration(cfg.StopTimeout), Jobs: sched}
	return listen(ctx, stop, srv, ln, log)
}

// listen serves ln until ctx is done, telling systemd when the daemon is
// ready and when it stops.
func listen(ctx context.Context, stop context.CancelFunc, srv *server.Server, ln net.Listener, log *slog.Logger) error {
	log.Info("listening", "socket", ln.Addr().String(), "version", version.Version)
	notify(log, daemon.SdNotifyReady)
	stopping := make(chan struct{})
	context.AfterFunc(ctx, func() {
		notify(log, daemon.SdNotifyStopping)
		close(stopping)
	})
	err := srv.Serve(ctx, ln)
	stop() // Serve may end on its own: systemd still hears STOPPING before the exit
	<-stopping
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

// poolZstdLevels collects the per-pool zstd level overrides by directory.
func poolZstdLevels(cfg config.Config) map[string]int {
	levels := map[string]int{}
	for dir, o := range cfg.Pools {
		if o.ZstdLevel != nil {
			levels[dir] = *o.ZstdLevel
		}
	}
	return levels
}

// indexSizes collects the configured dedup index sizes, global and per
// pool by directory; 0 leaves an index sized by its pool's data.
func indexSizes(cfg config.Config) optimizer.IndexSizes {
	s := optimizer.IndexSizes{Pools: map[string]uint64{}}
	if cfg.IndexSize != nil {
		s.Default = uint64(*cfg.IndexSize)
	}
	for dir, o := range cfg.Pools {
		if o.IndexSize != nil {
			s.Pools[dir] = uint64(*o.IndexSize)
		}
	}
	return s
}
