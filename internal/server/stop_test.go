// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/pool/pooltest"
)

// A request in flight when the server is told to stop is finished if it
// ends within StopTimeout, and abandoned after it.
func TestStopWaitsForRequestsInFlight(t *testing.T) {
	tests := []struct {
		name        string
		stopTimeout time.Duration
		finish      bool // the client completes its request after the stop
		want        error
	}{
		{"request finishes", 10 * time.Second, true, nil},
		{"request outlasts the timeout", 200 * time.Millisecond, false, ErrStopTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := logtest.Discard()
			srv := &Server{Pools: PoolRegistry(pooltest.Start(t, pooltest.Options{Log: log}).Pools), Log: log, StopTimeout: tt.stopTimeout, ReadTimeout: time.Minute}
			path := filepath.Join(t.TempDir(), "s.sock")
			ln, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx, ln) }()

			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			waitInFlight(t, srv)
			stopped := time.Now()
			cancel()
			if tt.finish {
				fmt.Fprintln(conn, `{"v":1,"op":"hello","args":{"client":"test"}}`)
				if reply, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
					t.Fatalf("reply after stop: %q, %v", reply, err)
				}
			}
			select {
			case err := <-served:
				if !errors.Is(err, tt.want) {
					t.Fatalf("Serve: %v, want %v", err, tt.want)
				}
				if took := time.Since(stopped); tt.want != nil && took > tt.stopTimeout+2*time.Second {
					t.Errorf("Serve took %s to give up, timeout %s", took, tt.stopTimeout)
				}
			case <-time.After(tt.stopTimeout + 5*time.Second):
				t.Fatal("Serve did not return")
			}
		})
	}
}

func waitInFlight(t *testing.T, srv *Server) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); srv.inFlight.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection was never accepted")
		}
	}
}
