// SPDX-License-Identifier: GPL-2.0-or-later

// Command start measures how long a VM start waits when the optimiser is
// compressing the same volume, against a start with the optimiser idle.
// A start holds the volume's job at its next chunk, so the difference
// should stay within one chunk's work. Run as root; it makes and removes
// a loop-mounted btrfs under /var/tmp.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

func main() {
	runs := flag.Int("runs", 5, "starts measured per case")
	sizeMiB := flag.Int("size-mib", 512, "compressible data written per session")
	flag.Parse()
	if err := run(*runs, int64(*sizeMiB)<<20); err != nil {
		fmt.Fprintln(os.Stderr, "bench/start:", err)
		os.Exit(1)
	}
}

func run(runs int, size int64) error {
	prefix := os.Getenv("BTRFS_VDO_RUN_PREFIX")
	if prefix == "" {
		prefix = "btrfs-vdo-"
	}
	work, err := os.MkdirTemp("/var/tmp", prefix+"bench-start-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	mnt, unmount, err := mountBtrfs(work, 4*size+(1<<30))
	if err != nil {
		return err
	}
	defer unmount()

	dir := filepath.Join(mnt, "pool")
	if _, err := pool.Setup(dir, true); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := pool.NewRegistry(log, nil)
	defer reg.Close()
	sched := pool.NewScheduler(pool.SchedulerConfig{IdleIO: true}, log, nil)
	reg.SetScheduler(sched)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sched.Run(ctx)
	p, err := reg.Open("bench", dir)
	if err != nil {
		return err
	}
	spec := volume.Spec{VID: "appvms/bench/private", RW: true, SaveOnStop: true, RevisionsToKeep: 1, Size: 2 * size}
	if _, err := p.Volumes.Create(spec); err != nil {
		return err
	}
	data := text(size)
	measure := func(busy bool) (time.Duration, error) {
		if !busy {
			sched.Pause("bench")
			defer sched.Resume("bench")
		}
		if _, err := p.Volumes.Start(spec); err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(dir, "appvms/bench/private-dirty.img"), data, 0o600); err != nil {
			return 0, err
		}
		if _, err := p.Volumes.Stop(spec); err != nil {
			return 0, err
		}
		if busy {
			time.Sleep(200 * time.Millisecond) // let the job get going
		}
		began := time.Now()
		if _, err := p.Volumes.Start(spec); err != nil {
			return 0, err
		}
		took := time.Since(began)
		_, err := p.Volumes.Stop(spec)
		return took, err
	}
	fmt.Printf("start latency, %d runs, %d MiB written per session\n", runs, size>>20)
	for _, c := range []struct {
		name string
		busy bool
	}{{"optimiser idle", false}, {"job running on the volume", true}} {
		var ds []time.Duration
		for range runs {
			d, err := measure(c.busy)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("%-28s median %8.1f ms   max %8.1f ms\n", c.name, ms(ds[len(ds)/2]), ms(ds[len(ds)-1]))
		if err := sched.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func text(n int64) []byte {
	line := []byte("2026-11-25 18:40:11 kernel: usb 1-2: new high-speed USB device number 7 using xhci_hcd\n")
	return bytes.Repeat(line, int(n)/len(line)+1)[:n]
}

// mountBtrfs makes a sparse image of size bytes in dir, formats it and
// mounts it on a loop device, which the unmount releases.
func mountBtrfs(dir string, size int64) (string, func(), error) {
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return "", nil, err
	}
	if err := os.Truncate(img, size); err != nil {
		return "", nil, err
	}
	for _, args := range [][]string{{"mkfs.btrfs", "-q", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("%v: %v: %s", args, err, out)
		}
	}
	return mnt, func() { _ = exec.Command("umount", mnt).Run() }, nil
}
