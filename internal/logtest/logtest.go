// SPDX-License-Identifier: GPL-2.0-or-later

// Package logtest gives tests a logger that writes nothing (the standard
// library's slog.DiscardHandler is newer than the Go the project builds
// with).
package logtest

import (
	"io"
	"log/slog"
)

// Discard returns a logger that writes nothing.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
