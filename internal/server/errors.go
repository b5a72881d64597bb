// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// toAPIError gives err its stable code. The message is err's own: the
// volume layer already phrases it for the user.
func toAPIError(err error) *api.Error {
	var apiErr *api.Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	code := api.CodeIO
	switch {
	case errors.Is(err, errUnknownTarget):
		code = api.CodeUnknownTarget
	case errors.Is(err, volume.ErrInvalidName), errors.Is(err, errNestedPool):
		code = api.CodeInvalidName
	case errors.Is(err, volume.ErrNotStopped):
		code = api.CodeNotStopped
	case errors.Is(err, volume.ErrReadOnly):
		code = api.CodeReadOnly
	case errors.Is(err, volume.ErrNotSupported), errors.Is(err, errNoReflinks):
		code = api.CodeNotSupported
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		code = api.CodeNoSpace
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EBUSY), errors.Is(err, unix.ETXTBSY):
		code = api.CodeBusy
	case errors.Is(err, fs.ErrNotExist):
		code = api.CodeNotFound
	}
	return &api.Error{Code: code, Message: err.Error()}
}
