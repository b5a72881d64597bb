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

	ln, err := listener(cfg.Socket, log)
	if err != nil {
		return err
	}
	inhibitor := bus.NewInhibitor(nil, log) // on the bus once busLink connects it
	status := newDaemonStatus(nil, log)
	pools := pool.NewRegistry(log, status.writing(inhibitor.Writing))
	status.pools = pools
	defer pools.Close()
	pools.SetIndexSizes(indexSizes(cfg))
	limitMemory(pools, log)
	sched := pool.NewScheduler(pool.SchedulerConfig{
		Workers: cfg.JobConcurrency, ZstdLevel: cfg.ZstdLevel, PoolZstdLevels: poolZstdLevels(cfg),
		IdleIO: cfg.IOPriority == config.IOPriorityIdle, MinCompressSaving: cfg.MinCompressSaving / 100,
	}, log, status.jobDone)
	status.jobs = sched
	pools.SetScheduler(sched)
	if err := pools.Remember(cfg.StateDir); err != nil {
		return err
	}
	// Pending jobs resume now, not when a request first names their pool.
	pools.Restore()
	srv := &server.Server{Pools: server.PoolRegistry(pools), Log: log, Version: version.Version, AllowUID: 0,
		StopTimeout: time.Duration(cfg.StopTimeout), Jobs: sched}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The bus stays until the requests in flight are done: the shutdown
	// inhibitor matters most while the machine shuts down.
	busCtx, leaveBus := context.WithCancel(context.Background())
	link := &busLink{log: log, version: version.Version, inhibitor: inhibitor, status: status}
	if cfg.BatteryPolicy == config.BatteryPause {
		link.battery = sched
	}
	busDone := link.start(busCtx, connectBus(log))
	defer func() {
		leaveBus()
		busDone()
	}()
	go status.watchJobs(busCtx)
	go pools.ReleaseIdle(ctx, pool.IdleRelease)
	jobsDone := make(chan struct{})
	go func() {
		sched.Run(ctx)
		close(jobsDone)
	}()
	// Jobs stop at their next chunk and keep their place for the next start.
	defer func() {
		stop()
		<-jobsDone
	}()
	log.Info("listening", "socket", ln.Addr().String(), "version", version.Version)
	notify(log, daemon.SdNotifyReady)
	stopping := make(chan struct{})
	context.AfterFunc(ctx, func() {
		notify(log, daemon.SdNotifyStopping)
		close(stopping)
	})
	err = srv.Serve(ctx, ln)
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
func indexSizes(cfg config.Config) pool.IndexSizes {
	s := pool.IndexSizes{Pools: map[string]uint64{}}
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
