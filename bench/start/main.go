// SPDX-License-Identifier: GPL-2.0-or-later

// Command start measures how long a VM start takes when the optimizer is
// working on the same volume, against a start with the optimizer idle,
// and how much of it the start spent waiting for the volume's lock, which
// the job takes one chunk at a time. It prints the median and p99 of the
// starts with the job running next to their targets. Run as root; it
// makes and removes a loop-mounted btrfs under /var/tmp. Each start
// follows a session that writes -size-mib and a commit: at the defaults,
// about half a second per start on two cores, some two minutes in all.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/bench/internal/benchenv"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

func main() {
	runs := flag.Int("runs", 200, "starts measured with the job running")
	idleRuns := flag.Int("idle-runs", 20, "starts measured with the optimizer idle")
	sizeMiB := flag.Int("size-mib", 64, "compressible data written per session")
	flag.Parse()
	if err := run(*idleRuns, *runs, int64(*sizeMiB)<<20); err != nil {
		fmt.Fprintln(os.Stderr, "bench/start:", err)
		os.Exit(1)
	}
}

// Targets for a start with the job running on the volume.
const (
	targetMedian = 20 * time.Millisecond
	targetP99    = 50 * time.Millisecond
)

func run(idleRuns, busyRuns int, size int64) error {
	env, err := benchenv.New(false)
	if err != nil {
		return err
	}
	defer env.Close()
	mnt, err := env.MountBtrfs(context.Background(), "pool", 4*size+(1<<30))
	if err != nil {
		return err
	}
	b, err := openStartBench(filepath.Join(mnt, "pool"), size)
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Printf("start latency, %d MiB written per session; target with the job running: median <= %v, p99 <= %v\n",
		size>>20, targetMedian, targetP99)
	for _, c := range []struct {
		name string
		busy bool
		runs int
	}{{"optimizer idle", false, idleRuns}, {"job running on the volume", true, busyRuns}} {
		if err := b.series(c.name, c.busy, c.runs); err != nil {
			return err
		}
	}
	return nil
}

// startBench is a pool with one volume, and the optimizer running.
type startBench struct {
	*benchenv.InProcess
	dir  string
	spec volume.Spec
	data []byte
	// locked is when the last start took the volume's lock: the store
	// reports a start to the writing hook once it holds it.
	locked time.Time
	// steps are how long the job held the volume's lock, a step at a time,
	// during the series.
	mu    sync.Mutex
	steps []time.Duration
}

func openStartBench(dir string, size int64) (*startBench, error) {
	b := &startBench{dir: dir, data: text(size),
		spec: volume.Spec{VID: "appvms/bench/private", RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 2 * size}}
	var err error
	if b.InProcess, err = benchenv.OpenInProcess(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), b.writing); err != nil {
		return nil, err
	}
	if _, err := b.P.Volumes.Create(b.spec); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// writing is the store's hook: it notes when a start holds the lock, and
// how long each of the job's steps under the lock took.
func (b *startBench) writing(op, _ string) func() {
	now := time.Now()
	switch op {
	case "start":
		b.locked = now
	case "stop", "create":
	default:
		return func() {
			b.mu.Lock()
			b.steps = append(b.steps, time.Since(now))
			b.mu.Unlock()
		}
	}
	return func() {}
}

// series measures runs starts and prints their figures; with the job
// running, also how many starts found it running and the targets.
func (b *startBench) series(name string, busy bool, runs int) error {
	var took, waits []time.Duration
	running := 0
	b.mu.Lock()
	b.steps = nil
	b.mu.Unlock()
	for range runs {
		d, w, r, err := b.measure(busy)
		if err != nil {
			return err
		}
		took, waits = append(took, d), append(waits, w)
		if r {
			running++
		}
	}
	if runs > 0 {
		fmt.Printf("%s, %d runs\n", name, runs)
		report("  start", took)
		report("  of which lock wait", waits)
	}
	if busy && runs > 0 {
		b.mu.Lock()
		report("  job's locked steps", b.steps)
		b.mu.Unlock()
		fmt.Printf("  the job was running at %d of the %d starts\n", running, runs)
		fmt.Printf("  target: median %5.1f ms <= %v %s, p99 %5.1f ms <= %v %s\n",
			ms(quantile(took, 0.5)), targetMedian, verdict(quantile(took, 0.5) <= targetMedian),
			ms(quantile(took, 0.99)), targetP99, verdict(quantile(took, 0.99) <= targetP99))
	}
	return b.Sched.Wait(context.Background())
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

// measure returns how long a start took, how much of it was spent
// waiting for the volume's lock, and whether the volume's job was running
// as the start began.
func (b *startBench) measure(busy bool) (took, wait time.Duration, running bool, err error) {
	if !busy {
		b.Sched.Pause("bench")
		defer b.Sched.Resume("bench")
	}
	if _, err := b.P.Volumes.Start(b.spec); err != nil {
		return 0, 0, false, err
	}
	if err := os.WriteFile(filepath.Join(b.dir, "appvms/bench/private-dirty.img"), b.data, 0o600); err != nil {
		return 0, 0, false, err
	}
	if _, err := b.P.Volumes.Stop(b.spec); err != nil {
		return 0, 0, false, err
	}
	if busy {
		running = b.jobUnderWay()
	}
	began := time.Now()
	if _, err := b.P.Volumes.Start(b.spec); err != nil {
		return 0, 0, false, err
	}
	took, wait = time.Since(began), b.locked.Sub(began)
	_, err = b.P.Volumes.Stop(b.spec)
	return took, wait, running, err
}

// jobUnderWay waits until the volume's job runs, then a random while
// (up to 150 ms), so that starts fall at every step of the job, and
// reports whether it still runs.
func (b *startBench) jobUnderWay() bool {
	for deadline := time.Now().Add(2 * time.Second); !b.jobRunning() && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(rand.N(150 * time.Millisecond))
	return b.jobRunning()
}

// jobRunning reports whether a worker runs the volume's job.
func (b *startBench) jobRunning() bool {
	for _, st := range b.Sched.Jobs() {
		if st.VID == b.spec.VID && st.State == api.JobRunning {
			return true
		}
	}
	return false
}

// report prints the median, p90, p99 and max of ds.
func report(name string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	fmt.Printf("%-22s median %7.1f ms  p90 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", name,
		ms(quantile(ds, 0.5)), ms(quantile(ds, 0.9)), ms(quantile(ds, 0.99)), ms(ds[len(ds)-1]))
}

// quantile is the q-quantile of the sorted ds, by the nearest rank.
func quantile(ds []time.Duration, q float64) time.Duration {
	return ds[int(math.Ceil(q*float64(len(ds))))-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func text(n int64) []byte {
	line := []byte("2026-11-25 18:40:11 kernel: usb 1-2: new high-speed USB device number 7 using xhci_hcd\n")
	return bytes.Repeat(line, int(n)/len(line)+1)[:n]
}
