// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

const needsRoot = "needs root (run with sudo)"

// explain turns err into what the user reads and the exit status. The
// daemon's messages are meant for the user already; the kernel's errno
// texts are put in the user's terms.
func explain(err error) (string, int) {
	var apiErr *api.Error
	var usageErr usageError
	var stopped interrupted
	switch {
	case errors.As(err, &usageErr):
		return err.Error(), exitUsage
	case errors.As(err, &stopped):
		return err.Error(), exitInterrupted
	case errors.As(err, &apiErr) && apiErr.Code == api.CodeUnknownTarget:
		return apiErr.Message, exitUsage
	case errors.As(err, &apiErr) && apiErr.Code == api.CodePermissionDenied:
		return needsRoot + ": " + apiErr.Message, exitFailure
	case errors.Is(err, unix.EACCES) && os.Geteuid() != 0:
		return needsRoot + ": " + err.Error(), exitFailure
	case errors.Is(err, unix.EPERM) && os.Geteuid() != 0:
		return needsRoot + ": " + err.Error(), exitFailure
	case errors.Is(err, unix.ENOTTY):
		return strings.ReplaceAll(err.Error(), unix.ENOTTY.Error(), "not on btrfs"), exitFailure
	case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.ENOENT) && strings.Contains(err.Error(), "not reachable"):
		return err.Error() + " (is btrfs-vdod.socket enabled? systemctl enable --now btrfs-vdod.socket)", exitFailure
	}
	return err.Error(), exitFailure
}
