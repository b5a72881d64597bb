// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// unencodableOp is an op TestCodesSetBeforeHandlers routes for a while,
// whose result encoding/json refuses.
const unencodableOp api.Op = "test.unencodable"

// refusals are requests the server refuses before any handler runs, or
// whose result it cannot encode, with the codes no handler's error is
// translated into. A stranger's request goes to a server that serves
// another uid than the test's.
var refusals = []struct {
	name     string
	frame    string
	stranger bool
	want     api.Code
}{
	{"malformed frame", `{"v":1,"op":`, false, api.CodeBadRequest},
	{"unknown op", `{"v":1,"op":"volume.explode","args":{}}`, false, api.CodeBadRequest},
	{"malformed arguments", `{"v":1,"op":"hello","args":{"client":7}}`, false, api.CodeBadRequest},
	{"another protocol version", `{"v":2,"op":"hello","args":{}}`, false, api.CodeUnsupportedProtocol},
	{"peer is not the served uid", `{"v":1,"op":"hello","args":{}}`, true, api.CodePermissionDenied},
	{"result that cannot be encoded", `{"v":1,"op":"` + string(unencodableOp) + `"}`, false, api.CodeInternal},
}

// Each refusal gets its code from a real server over a real socket.
func TestCodesSetBeforeHandlers(t *testing.T) {
	routes[unencodableOp] = route(func(*Server, api.StatusArgs) (func(), error) { return func() {}, nil })
	t.Cleanup(func() { delete(routes, unencodableOp) })
	served := startServer(t, &Server{Version: "test", AllowUID: uint32(os.Getuid())}, Listen)
	refused := startServer(t, &Server{Version: "test", AllowUID: uint32(os.Getuid()) + 1}, Listen)
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			path := served
			if tt.stranger {
				path = refused
			}
			resp := exchange(t, path, []byte(tt.frame+"\n"))
			if resp.OK || resp.Error == nil || resp.Error.Code != tt.want || resp.Error.Message == "" {
				t.Fatalf("reply %+v, want code %s and a message", resp, tt.want)
			}
		})
	}
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
		{"no reflinks", fmt.Errorf("set up /p: %w", errNoReflinks), api.CodeNotSupported},
		{"not found", fs.ErrNotExist, api.CodeNotFound},
		{"ENOENT", unix.ENOENT, api.CodeNotFound},
		{"ENOENT in a PathError", pathErr(unix.ENOENT), api.CodeNotFound},
		{"ENOENT in a LinkError", linkErr(unix.ENOENT), api.CodeNotFound},
		{"missing revision", opErr(fmt.Errorf("revision 3: %w", fs.ErrNotExist)), api.CodeNotFound},
		{"invalid name", opErr(fmt.Errorf("%w: vid %q", volume.ErrInvalidName, "appvms/../etc")), api.CodeInvalidName},
		{"nested pool", fmt.Errorf("set up /p/q: %w", errNestedPool), api.CodeInvalidName},
		{"unknown target", fmt.Errorf("optimize %q: %w", "nosuchvm", errUnknownTarget), api.CodeUnknownTarget},
		{"unknown target naming a missing volume", fmt.Errorf("%w: pool vdo has no volume %s: %w",
			errUnknownTarget, "appvms/a/private", fs.ErrNotExist), api.CodeUnknownTarget},
		{"invalid name before a missing file", opErr(fmt.Errorf("%w: %w", volume.ErrInvalidName, fs.ErrNotExist)), api.CodeInvalidName},
		{"optimize failures, joined", errors.Join(
			fmt.Errorf("Cannot optimize vdo:appvms/a/private: %w", pathErr(unix.ENOSPC)),
			fmt.Errorf("Cannot optimize vdo:appvms/b/private: %w", pathErr(unix.EIO))), api.CodeNoSpace},
		{"missing pool directory", fmt.Errorf("Cannot use pool vdo: %w", pathErr(unix.ENOENT)), api.CodeNotFound},
		{"EIO", pathErr(unix.EIO), api.CodeIO},
		{"EROFS is no read-only volume", pathErr(unix.EROFS), api.CodeIO},
		{"EACCES", pathErr(unix.EACCES), api.CodeIO},
		{"EPERM from the filesystem is no refused peer", pathErr(unix.EPERM), api.CodeIO},
		{"EXDEV", linkErr(unix.EXDEV), api.CodeIO},
		{"EEXIST", pathErr(unix.EEXIST), api.CodeIO},
	}
	produced := map[api.Code]bool{}
	for _, r := range refusals {
		produced[r.want] = true
	}
	for _, tt := range tests {
		produced[tt.want] = true
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
		if !produced[code] {
			t.Errorf("no case maps an error or a refusal to %q", code)
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
