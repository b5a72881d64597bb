// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// A flood is floodClients connections sending floodBytes each at once,
// far past the frame limit: with unbounded frames the daemon would hold
// floodClients*floodBytes (512 MiB), with the limit about one frame each.
const (
	floodClients = 32
	floodBytes   = 16 * api.MaxFrameBytes
	// floodGrowth bounds the RSS the flood may add: a frame per client,
	// doubled for the garbage collector's headroom and again for slices
	// grown by append.
	floodGrowth = floodClients * 4 * api.MaxFrameBytes
)

// floodOversized sends a flood to the server at path and fails if the
// server read past the frame limit or its memory grew beyond floodGrowth.
func floodOversized(t *testing.T, path string) {
	before, err := vmRSS()
	if err != nil {
		t.Fatal(err)
	}
	var peak atomic.Int64
	peak.Store(before)
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if rss, err := vmRSS(); err == nil && rss > peak.Load() {
					peak.Store(rss)
				}
			}
		}
	}()

	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var cutOff atomic.Int32
	var wg sync.WaitGroup
	for range floodClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			sent := 0
			for sent < floodBytes {
				n, err := conn.Write(chunk)
				sent += n
				if err != nil {
					cutOff.Add(1) // the server gave up on this frame and closed
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled

	if n := cutOff.Load(); n != floodClients {
		t.Errorf("the server read all %d bytes from %d of %d clients", floodBytes, floodClients-n, floodClients)
	}
	growth := peak.Load() - before
	t.Logf("RSS grew by %d KiB during the flood (bound %d KiB)", growth>>10, floodGrowth>>10)
	if growth > floodGrowth {
		t.Fatalf("RSS grew by %d MiB for %d oversized frames, more than %d MiB", growth>>20, floodClients, floodGrowth>>20)
	}
}

// vmRSS is this process's resident set size in bytes.
func vmRSS() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.SplitAfter(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}
