// SPDX-License-Identifier: GPL-2.0-or-later

package bus_test

import (
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus/bustest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
)

var discard = logtest.Discard()

func TestInhibitorHeldWhileWriting(t *testing.T) {
	b := bustest.Start(t)
	logind := bustest.NewLogind(t, b.Conn(t))
	inh := bus.NewInhibitor(b.Conn(t), discard)

	done := map[string]func(){}
	steps := []struct {
		name     string
		begin    string // the op that begins, or ""
		end      string // the op that ends, or ""
		locks    int    // locks handed out so far
		lastHeld bool   // whether the newest lock is held
	}{
		{"first writer takes the lock", "stop", "", 1, true},
		{"second writer shares it", "resize", "", 1, true},
		{"lock kept while one writes", "", "stop", 1, true},
		{"ending twice changes nothing", "", "stop", 1, true},
		{"last writer releases it", "", "resize", 1, false},
		{"a new writer takes a new lock", "start", "", 2, true},
		{"and releases it", "", "start", 2, false},
	}
	for _, s := range steps {
		if s.begin != "" {
			done[s.begin] = inh.Writing(s.begin, "appvms/work/private")
		}
		if s.end != "" {
			done[s.end]()
		}
		locks := logind.Locks()
		if len(locks) != s.locks {
			t.Fatalf("%s: logind handed out %d locks, want %d", s.name, len(locks), s.locks)
		}
		if held := locks[len(locks)-1].Held(); held != s.lastHeld {
			t.Fatalf("%s: lock held = %v, want %v", s.name, held, s.lastHeld)
		}
	}
	got := logind.Locks()[0]
	if got.What != "shutdown:sleep" || got.Who != "btrfs-vdo" || got.Mode != "delay" || got.Why == "" {
		t.Errorf("Inhibit(%q, %q, %q, %q), want a delay lock on shutdown:sleep by btrfs-vdo", got.What, got.Who, got.Why, got.Mode)
	}
}

func TestInhibitorWithoutLogind(t *testing.T) {
	b := bustest.Start(t)
	inh := bus.NewInhibitor(b.Conn(t), discard)
	began := time.Now()
	done := inh.Writing("stop", "appvms/work/private")
	done()
	if d := time.Since(began); d > time.Second {
		t.Errorf("writing without logind waited %s", d)
	}
	// logind appearing later is used by the next writer.
	logind := bustest.NewLogind(t, b.Conn(t))
	done = inh.Writing("stop", "appvms/work/private")
	if locks := logind.Locks(); len(locks) != 1 || !locks[0].Held() {
		t.Fatalf("after logind started: %d locks", len(locks))
	}
	done()
	if logind.Locks()[0].Held() {
		t.Error("lock still held after the writer ended")
	}
}

// Across a bus restart: a lock held stays held (logind watches its file
// descriptor, not the connection), and a writer that began while the bus
// was away gets one as soon as the daemon is back on a bus.
func TestInhibitorAcrossReconnect(t *testing.T) {
	first := bustest.Start(t)
	logind := bustest.NewLogind(t, first.Conn(t))
	inh := bus.NewInhibitor(first.Conn(t), discard)
	done := inh.Writing("stop", "appvms/work/private")
	inh.SetConn(nil) // the connection dropped
	if locks := logind.Locks(); len(locks) != 1 || !locks[0].Held() {
		t.Fatalf("lock lost with the connection: %d locks", len(locks))
	}
	done()
	if logind.Locks()[0].Held() {
		t.Fatal("lock held after the writer ended off the bus")
	}

	done = inh.Writing("start", "appvms/work/private") // off the bus: unprotected
	second := bustest.Start(t)
	logind = bustest.NewLogind(t, second.Conn(t))
	inh.SetConn(second.Conn(t))
	if locks := logind.Locks(); len(locks) != 1 || !locks[0].Held() {
		t.Fatalf("after reconnecting with a writer at work: %d locks", len(locks))
	}
	done()
	if logind.Locks()[0].Held() {
		t.Error("lock held after the writer ended")
	}
	inh.SetConn(second.Conn(t)) // no writer: no lock
	if n := len(logind.Locks()); n != 1 {
		t.Errorf("reconnecting without a writer took a lock: %d locks", n)
	}
}
