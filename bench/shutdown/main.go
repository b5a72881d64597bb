// SPDX-License-Identifier: GPL-2.0-or-later

// Command shutdown measures what many VMs stopping at once cost the
// optimizer. On a loop-mounted btrfs it makes -vms volumes of -size-mib of
// compressible data, committed and optimized once, and stops them all
// together once untimed; then one VM rewrites 1 % of its image and stops,
// and its job is timed alone; then every VM
// rewrites 1 % and all stop at once, as qubesd stops them at a system
// shutdown (each VM's domain-stopped handler runs its storage's stop in a
// task of its own), and the jobs are timed from the first stop to the last
// job's end.
// It prints both, their ratio against the target (all jobs within 4 times
// one VM's job), the transaction commits the jobs made, and how long and
// how often the shutdown inhibitor was held: only while an operation that
// writes runs, since reads under a volume's lock do not report to the
// hook (the target, no longer than the writes, holds by construction;
// see inhibit.go). The pool and its
// optimizer run in this process, wired as btrfs-vdod wires them, but for
// logind: the Writing hook times the lock instead of taking it. -log
// writes the daemon's log at debug level, with each job's phase times and
// the pool measurements, to stderr. Run as root:
//
//	go run ./bench/shutdown [-vms 20] [-size-mib 128] [-log]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// targetRatio bounds the jobs of all VMs stopping together against one
// VM's job.
const targetRatio = 4

func main() {
	vms := flag.Int("vms", 20, "VMs that stop together")
	sizeMiB := flag.Int64("size-mib", 128, "data in each VM's image")
	logJobs := flag.Bool("log", false, "log the pool and its jobs to stderr")
	flag.Parse()
	var log io.Writer = io.Discard
	if *logJobs {
		log = os.Stderr
	}
	if err := run(*vms, *sizeMiB<<20, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench/shutdown:", err)
		os.Exit(1)
	}
}

func run(vms int, size int64, log io.Writer) error {
	env, err := benchenv.New(false)
	if err != nil {
		return err
	}
	defer env.Close()
	ctx := context.Background()
	mnt, err := env.MountBtrfs(ctx, "pool", int64(vms)*size*3+(1<<30))
	if err != nil {
		return err
	}
	b, err := openShutdownBench(filepath.Join(mnt, "pool"), vms, size, log)
	if err != nil {
		return err
	}
	defer b.Close()
	// One burst untimed first: the dedup index grows to the size of the
	// pool's data once (a resize costs about 0.2 s here), which belongs to
	// filling the pool, not to a shutdown.
	if _, err := b.stopTogether(b.specs, 1); err != nil {
		return err
	}
	one, err := b.stopTogether(b.specs[:1], 2)
	if err != nil {
		return err
	}
	all, err := b.stopTogether(b.specs, 3)
	if err != nil {
		return err
	}
	fmt.Printf("%d VMs of %d MiB, 1 %% of each rewritten before the stop\n", vms, size>>20)
	one.print("one VM's job", 1)
	all.print(fmt.Sprintf("all %d VMs' jobs", vms), vms)
	ratio := all.took.Seconds() / one.took.Seconds()
	fmt.Printf("  all / one                 %8.1fx   target <= %dx: %s\n", ratio, targetRatio, benchenv.Met(ratio <= targetRatio))
	return nil
}

// burst is what the jobs of VMs stopped together took: from the first
// stop to the last job's end, of which the stops themselves, the
// transaction commits the jobs made, and the inhibitor's times.
type burst struct {
	took, stops time.Duration
	commits     int64
	inhibit     inhibitTimes
}

func (r burst) print(what string, vms int) {
	fmt.Printf("  %-25s %8.3f s  %3d commits (%.1f per job); the stops %.3f s\n",
		what, r.took.Seconds(), r.commits, float64(r.commits)/float64(vms), r.stops.Seconds())
	in := r.inhibit
	fmt.Printf("    inhibitor held          %8.3f s  %3d times, while operations that write ran\n",
		in.held.Seconds(), in.takes)
}

// shutdownBench is a pool of VMs' private volumes, its optimizer running.
type shutdownBench struct {
	*benchenv.InProcess
	dir   string
	size  int64
	clock inhibitClock
	specs []volume.Spec
}

// openShutdownBench makes the pool and its volumes, each committed with
// its data and optimized once.
func openShutdownBench(dir string, vms int, size int64, w io.Writer) (*shutdownBench, error) {
	b := &shutdownBench{dir: dir, size: size}
	var err error
	if b.InProcess, err = benchenv.OpenInProcess(dir, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), b.clock.Writing); err != nil {
		return nil, err
	}
	if err := b.fill(vms); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *shutdownBench) fill(vms int) error {
	for i := range vms {
		s := volume.Spec{VID: fmt.Sprintf("appvms/vm%d/private", i), RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 2 * b.size}
		if _, err := b.P.Volumes.Create(s); err != nil {
			return err
		}
		b.specs = append(b.specs, s)
		if err := b.session(s, 0, text(fmt.Sprint("vm", i), b.size)); err != nil {
			return err
		}
		if _, err := b.P.Volumes.Stop(s); err != nil {
			return err
		}
	}
	return b.Sched.Wait(context.Background())
}

// session starts s and writes data at off into its dirty image, as its VM
// does.
func (b *shutdownBench) session(s volume.Spec, off int64, data []byte) error {
	if _, err := b.P.Volumes.Start(s); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(b.dir, s.VID+"-dirty.img"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// stopTogether rewrites 1 % of each volume in a session, stops them all
// at once, and measures the burst.
func (b *shutdownBench) stopTogether(specs []volume.Spec, round int) (burst, error) {
	n := b.size / 100
	for i, s := range specs {
		if err := b.session(s, int64(i)*n%(b.size-n), text(fmt.Sprint("round", round, "vm", i), n)); err != nil {
			return burst{}, err
		}
	}
	b.quiet(specs)
	commits, inhibit := b.Sched.Counters().Get(optimizer.CountJobCommits), b.clock.read()
	began := time.Now()
	stopped := make(chan error, len(specs))
	for _, s := range specs {
		go func() {
			_, err := b.P.Volumes.Stop(s)
			stopped <- err
		}()
	}
	var err error
	for range specs {
		err = errors.Join(err, <-stopped)
	}
	stops := time.Since(began)
	if err != nil {
		return burst{}, err
	}
	if err := b.Sched.Wait(context.Background()); err != nil {
		return burst{}, err
	}
	return burst{took: time.Since(began), stops: stops,
		commits: b.Sched.Counters().Get(optimizer.CountJobCommits) - commits, inhibit: b.clock.read().since(inhibit)}, nil
}

// quiet lets what the last round left behind end before a round is
// timed: the deletion of the revisions its commits pruned, and the pool
// measurement that follows its jobs, a second after the last, and its
// pause (one that took more than 0.1 s is repeated at most once per 20
// times its length: the 5 s cover 0.2 s, and here it takes 13 to 103 ms),
// so that no round's jobs share the disk with it.
func (b *shutdownBench) quiet(specs []volume.Spec) {
	for _, s := range specs {
		b.P.Volumes.WaitPruned(s.VID)
	}
	time.Sleep(5 * time.Second)
}

// text is n bytes of compressible text that differs per seed.
func text(seed string, n int64) []byte {
	var buf bytes.Buffer
	for i := 0; int64(buf.Len()) < n; i++ {
		fmt.Fprintf(&buf, "%s %d: 2026-11-25 18:40:11 kernel: usb 1-2: new high-speed USB device\n", seed, i)
	}
	return buf.Bytes()[:n]
}
