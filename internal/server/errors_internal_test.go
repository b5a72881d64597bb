// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"fmt"
	"io/fs"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/pool"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// codesSetElsewhere are the codes the server gives a request it refuses
// before any handler runs, or a result it cannot encode: no handler's error
// is translated into them.
var codesSetElsewhere = map[api.Code]string{
	api.CodeBadRequest:          "malformed frame or arguments",
	api.CodeUnsupportedProtocol: "hello with another protocol version",
	api.CodePermissionDenied:    "peer is not root",
	api.CodeInternal:            "result that cannot be encoded",
}

// toAPIError is the error contract the Python driver and the CLI match on:
// each failure of the volume store, the pools or the operating system gets
// its one stable code, however deeply it is wrapped.
func TestToAPIError(t *testing.T) {
	pathErr := func(err error) error { return &fs.PathError{Op: "open", Path: "/p/appvms/a/private.img", Err: err} }
	linkErr := func(err error) error {
		return &os.LinkError{Op: "rename", Old: "/p/appvms/a/private-dirty.img", New: "/p/appvms/a/private.img", Err: err}
	}
	opErr := func(err error) error { return &volume.OpError{Op: "revert", VID: "appvms/a/private", Err: err} }
	tests := []struct {
		name string
		err  error
		want api.Code
	}{
		{"ENOSPC", unix.ENOSPC, api.CodeNoSpace},
		{"EDQUOT", unix.EDQUOT, api.CodeNoSpace},
		{"ENOSPC in a PathError", pathErr(unix.ENOSPC), api.CodeNoSpace},
		{"ENOSPC in a LinkError", linkErr(unix.ENOSPC), api.CodeNoSpace},
		{"EDQUOT wrapped twice", fmt.Errorf("copy: %w", pathErr(unix.EDQUOT)), api.CodeNoSpace},
		{"ENOSPC in a SyscallError", os.NewSyscallError("fallocate", unix.ENOSPC), api.CodeNoSpace},
		{"EBUSY", unix.EBUSY, api.CodeBusy},
		{"EAGAIN", unix.EAGAIN, api.CodeBusy},
		{"ETXTBSY", unix.ETXTBSY, api.CodeBusy},
		{"EBUSY in a PathError", pathErr(unix.EBUSY), api.CodeBusy},
		{"EBUSY from an ioctl", os.NewSyscallError("ioctl", unix.EBUSY), api.CodeBusy},
		{"not stopped", opErr(volume.ErrNotStopped), api.CodeNotStopped},
		{"not stopped, wrapped", fmt.Errorf("import: %w", volume.ErrNotStopped), api.CodeNotStopped},
		{"read-only", opErr(volume.ErrReadOnly), api.CodeReadOnly},
		{"not supported", opErr(volume.ErrNotSupported), api.CodeNotSupported},
		{"no reflinks", fmt.Errorf("set up /p: %w", pool.ErrNoReflinks), api.CodeNotSupported},
		{"not found", fs.ErrNotExist, api.CodeNotFound},
		{"ENOENT", unix.ENOENT, api.CodeNotFound},
		{"ENOENT in a PathError", pathErr(unix.ENOENT), api.CodeNotFound},
		{"ENOENT in a LinkError", linkErr(unix.ENOENT), api.CodeNotFound},
		{"missing revision", opErr(fmt.Errorf("revision 3: %w", fs.ErrNotExist)), api.CodeNotFound},
		{"invalid name", opErr(fmt.Errorf("%w: vid %q", volume.ErrInvalidName, "appvms/../etc")), api.CodeInvalidName},
		{"nested pool", fmt.Errorf("set up /p/q: %w", pool.ErrNested), api.CodeInvalidName},
		{"unknown target", fmt.Errorf("optimize %q: %w", "nosuchvm", pool.ErrUnknownTarget), api.CodeUnknownTarget},
		{"EIO", pathErr(unix.EIO), api.CodeIO},
		{"EPERM from the filesystem is no refused peer", pathErr(unix.EPERM), api.CodeIO},
		{"EXDEV", linkErr(unix.EXDEV), api.CodeIO},
		{"EEXIST", pathErr(unix.EEXIST), api.CodeIO},
	}
	mapped := map[api.Code]bool{}
	for _, tt := range tests {
		mapped[tt.want] = true
		t.Run(tt.name, func(t *testing.T) {
			got := toAPIError(tt.err)
			if got.Code != tt.want {
				t.Errorf("code %q for %v, want %q", got.Code, tt.err, tt.want)
			}
			if got.Message != tt.err.Error() {
				t.Errorf("message %q, want the error's own %q", got.Message, tt.err.Error())
			}
		})
	}
	for _, code := range api.Codes {
		if _, ok := codesSetElsewhere[code]; !ok && !mapped[code] {
			t.Errorf("no case maps an error to %q", code)
		}
	}
}

// An error that already carries its code keeps it, however wrapped.
func TestToAPIErrorKeepsAPIError(t *testing.T) {
	for _, code := range api.Codes {
		t.Run(string(code), func(t *testing.T) {
			want := &api.Error{Code: code, Message: "refused"}
			if got := toAPIError(fmt.Errorf("stop: %w", want)); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}
