package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// newLogger logs to w at level. When w is the journal, lines carry no
// time: journald stamps each one itself.
func newLogger(w io.Writer, level string, journal bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if journal {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
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
