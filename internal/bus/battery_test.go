// SPDX-License-Identifier: GPL-2.0-or-later

package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus/bustest"
)

// pauser records the calls WatchBattery makes.
type pauser chan string

func (p pauser) Pause(reason string)  { p <- "pause: " + reason }
func (p pauser) Resume(reason string) { p <- "resume: " + reason }

// next returns the next call, or "" if none comes in time.
func (p pauser) next(wait time.Duration) string {
	select {
	case call := <-p:
		return call
	case <-time.After(wait):
		return ""
	}
}

func watch(t *testing.T, b *bustest.Bus) pauser {
	t.Helper()
	p := make(pauser, 8)
	conn := b.Conn(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- bus.WatchBattery(ctx, conn, discard, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestBatteryPausesJobs(t *testing.T) {
	b := bustest.Start(t)
	upower := bustest.NewUPower(t, b.Conn(t), true)
	p := watch(t, b)
	steps := []struct {
		name      string
		onBattery bool
		want      string // the call expected, "" for none
	}{
		{"started on battery", true, "pause: on battery"},
		{"on AC", false, "resume: on battery"},
		{"AC again is no change", false, ""},
		{"battery again", true, "pause: on battery"},
	}
	for i, s := range steps {
		if i > 0 {
			upower.SetOnBattery(s.onBattery)
		}
		wait := 5 * time.Second
		if s.want == "" {
			wait = 200 * time.Millisecond
		}
		if got := p.next(wait); got != s.want {
			t.Fatalf("%s: got call %q, want %q", s.name, got, s.want)
		}
	}
}

func TestBatteryUPowerComesAndGoes(t *testing.T) {
	b := bustest.Start(t)
	p := watch(t, b)
	if got := p.next(200 * time.Millisecond); got != "" {
		t.Fatalf("without UPower: got call %q, want none (counts as on AC)", got)
	}
	conn := b.Conn(t)
	bustest.NewUPower(t, conn, true)
	if got := p.next(5 * time.Second); got != "pause: on battery" {
		t.Fatalf("UPower started on battery: got call %q", got)
	}
	conn.Close()
	if got := p.next(5 * time.Second); got != "resume: on battery" {
		t.Fatalf("UPower stopped: got call %q, want a resume", got)
	}
}

// A watch that loses its bus ends with an error and lifts its pause: the
// daemon watches again once back on a bus, starting from "on AC".
func TestBatteryWatchLostResumes(t *testing.T) {
	b := bustest.Start(t)
	bustest.NewUPower(t, b.Conn(t), true)
	p := make(pauser, 8)
	errc := make(chan error, 1)
	go func() { errc <- bus.WatchBattery(context.Background(), b.Conn(t), discard, p) }()
	if got := p.next(5 * time.Second); got != "pause: on battery" {
		t.Fatalf("on battery: got call %q", got)
	}
	b.Kill()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("the watch ended without an error when the bus went away")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end when the bus went away")
	}
	if got := p.next(time.Second); got != "resume: on battery" {
		t.Fatalf("after losing the bus: got call %q, want a resume", got)
	}
}
