// SPDX-License-Identifier: GPL-2.0-or-later

package bus

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// inhibitTimeout bounds the call to logind. The first writer waits for it
// with its volume locked, so it must be short; logind answers in
// milliseconds.
const inhibitTimeout = 2 * time.Second

// inhibitWhy is what systemd-inhibit --list shows for the lock.
const inhibitWhy = "Writing Qubes VM image files"

// Inhibitor holds one logind delay lock for shutdown and sleep while any
// file-changing volume operation runs, and closes it the moment the last
// one ends. logind lets the machine go down once the lock is closed, or
// after its InhibitDelayMaxSec at most.
//
// The call is made here with godbus rather than through go-systemd's
// login1 client, which opens a second connection of its own and cannot
// bound the call with a timeout.
type Inhibitor struct {
	log *slog.Logger

	mu      sync.Mutex
	logind  dbus.BusObject // nil while off the bus
	writers int
	lock    *os.File // nil while not held
	failing bool     // the last attempt failed: do not log each retry
}

// NewInhibitor returns an Inhibitor that asks logind on conn, or, while
// conn is nil, lets operations go ahead unprotected.
func NewInhibitor(conn *dbus.Conn, log *slog.Logger) *Inhibitor {
	i := &Inhibitor{log: log}
	i.SetConn(conn)
	return i
}

// SetConn makes the Inhibitor ask logind on conn from now on, nil for no
// bus; the daemon calls it when it has reconnected to a restarted bus. A
// lock already held stays held: it is a file descriptor logind watches,
// not tied to the bus connection. If operations are writing without one
// (they began while the bus was away), it is taken now.
func (i *Inhibitor) SetConn(conn *dbus.Conn) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.logind = nil
	if conn != nil {
		i.logind = conn.Object("org.freedesktop.login1", "/org/freedesktop/login1")
	}
	if i.logind != nil && i.writers > 0 && i.lock == nil {
		i.take("reconnect", "")
	}
}

// Writing is the pool's hook: it is called as a file-changing operation
// begins, and the function it returns as the operation ends. Without
// logind the operation goes ahead unprotected.
func (i *Inhibitor) Writing(op, vid string) (done func()) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.writers++
	if i.lock == nil {
		i.take(op, vid)
	}
	return sync.OnceFunc(i.release)
}

// take asks logind for the lock; i.mu is held.
func (i *Inhibitor) take(op, vid string) {
	if i.logind == nil {
		return // off the bus: SetConn takes it once back
	}
	ctx, cancel := context.WithTimeout(context.Background(), inhibitTimeout)
	defer cancel()
	var fd dbus.UnixFD
	err := i.logind.CallWithContext(ctx, "org.freedesktop.login1.Manager.Inhibit", 0,
		"shutdown:sleep", "btrfs-vdo", inhibitWhy, "delay").Store(&fd)
	if err != nil {
		level := slog.LevelWarn
		if i.failing {
			level = slog.LevelDebug
		}
		i.log.Log(ctx, level, "no shutdown inhibitor from logind; writing unprotected", "op", op, "vid", vid, "err", err)
		i.failing = true
		return
	}
	i.failing = false
	i.lock = os.NewFile(uintptr(fd), "logind-inhibitor")
	i.log.Debug("took shutdown inhibitor", "op", op, "vid", vid)
}

func (i *Inhibitor) release() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.writers--
	if i.writers == 0 && i.lock != nil {
		i.lock.Close()
		i.lock = nil
		i.log.Debug("released shutdown inhibitor")
	}
}
