// SPDX-License-Identifier: GPL-2.0-or-later

package bustest

import (
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// Logind stands in for systemd-logind's Manager.Inhibit. Each lock it
// hands out is the write end of a pipe; the lock is released when every
// copy of that end is closed, which the read end sees as end of file, just
// as logind watches its FIFO.
type Logind struct {
	mu    sync.Mutex
	locks []*Lock
}

// Lock is one inhibitor lock handed out.
type Lock struct {
	What, Who, Why, Mode string

	mu       sync.Mutex
	r, w     *os.File
	released bool
}

// NewLogind serves org.freedesktop.login1 on conn.
func NewLogind(t testing.TB, conn *dbus.Conn) *Logind {
	t.Helper()
	l := &Logind{}
	if err := conn.Export(logindManager{l}, "/org/freedesktop/login1", "org.freedesktop.login1.Manager"); err != nil {
		t.Fatal(err)
	}
	own(t, conn, "org.freedesktop.login1")
	t.Cleanup(func() {
		for _, lock := range l.Locks() {
			lock.r.Close()
			lock.closeWriteEnd()
		}
	})
	return l
}

// Locks returns the locks handed out so far, oldest first.
func (l *Logind) Locks() []*Lock {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Lock(nil), l.locks...)
}

type logindManager struct{ l *Logind }

// Inhibit has logind's signature: what, who, why, mode → fd.
func (m logindManager) Inhibit(what, who, why, mode string) (dbus.UnixFD, *dbus.Error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, dbus.MakeFailedError(err)
	}
	m.l.mu.Lock()
	m.l.locks = append(m.l.locks, &Lock{What: what, Who: who, Why: why, Mode: mode, r: r, w: w})
	m.l.mu.Unlock()
	return dbus.UnixFD(w.Fd()), nil
}

// Held reports whether the lock's holder still has it. Call it only after
// the holder's Inhibit call has returned: it closes the stand-in's own
// copy of the write end, which must outlive sending the reply.
func (k *Lock) Held() bool {
	k.closeWriteEnd()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.released {
		return false
	}
	_ = k.r.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := k.r.Read(make([]byte, 1))
	k.released = errors.Is(err, io.EOF)
	return !k.released
}

func (k *Lock) closeWriteEnd() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.w != nil {
		k.w.Close()
		k.w = nil
	}
}
