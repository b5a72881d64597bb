// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// newLogger logs to w at level. When w is the journal, lines carry no
// time, since journald stamps each one itself, and begin with their
// priority, "<3>" to "<7>", which journald reads as the syslog level.
func newLogger(w io.Writer, level string, journal bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if !journal {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	out := &prefixWriter{w: w}
	return slog.New(journalHandler{Handler: slog.NewTextHandler(out, opts), out: out}), nil
}

// journalPriority is the syslog priority journald files a record of level
// under: err, warning, info or debug.
func journalPriority(level slog.Level) string {
	switch {
	case level >= slog.LevelError:
		return "<3>"
	case level >= slog.LevelWarn:
		return "<4>"
	case level >= slog.LevelInfo:
		return "<6>"
	default:
		return "<7>"
	}
}

// journalHandler writes each record's line behind its priority. The text
// handler renders a record with one Write; holding out's lock across it
// keeps each line with its own prefix when goroutines log at once.
type journalHandler struct {
	slog.Handler
	out *prefixWriter
}

func (h journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.prefix = journalPriority(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return journalHandler{Handler: h.Handler.WithAttrs(attrs), out: h.out}
}

func (h journalHandler) WithGroup(name string) slog.Handler {
	return journalHandler{Handler: h.Handler.WithGroup(name), out: h.out}
}

// prefixWriter puts prefix before each write, in the same write; its
// caller holds mu.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(line []byte) (int, error) {
	if _, err := p.w.Write(append([]byte(p.prefix), line...)); err != nil {
		return 0, err
	}
	return len(line), nil
}

// fatalText is what a daemon that fails prints last: the error, whose
// lines (a configuration's problems, one a line) each carry the error
// priority when stderr is the journal, as log lines do.
func fatalText(err error, journal bool) string {
	var b strings.Builder
	for _, line := range strings.Split("btrfs-vdod: "+err.Error(), "\n") {
		if journal {
			b.WriteString(journalPriority(slog.LevelError))
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// isJournal reports whether f is the journal's stream. systemd sets
// JOURNAL_STREAM to "device:inode" of the stream it connects; comparing
// with f guards against a variable inherited by a process whose output
// was redirected elsewhere.
func isJournal(f *os.File, journalStream string) bool {
	var dev, ino uint64
	if _, err := fmt.Sscanf(journalStream, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return st.Dev == dev && st.Ino == ino
}
