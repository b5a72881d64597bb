// SPDX-License-Identifier: GPL-2.0-or-later

package api

// Code is a stable error code. Codes are never renamed or reused: the shim
// and scripts match on them.
type Code string

// Error codes, each with the condition that produces it.
const (
	// CodeBadRequest: the frame is not one JSON request of a known op with
	// well-formed arguments.
	CodeBadRequest Code = "bad_request"
	// CodeUnsupportedProtocol: the request's "v" is not ProtocolVersion.
	CodeUnsupportedProtocol Code = "unsupported_protocol"
	// CodePermissionDenied: the peer is not root.
	CodePermissionDenied Code = "permission_denied"
	// CodeInvalidName: a vid, revision id or pool path is unsafe or malformed.
	CodeInvalidName Code = "invalid_name"
	// CodeNotFound: an image, revision or source the operation needs is missing.
	CodeNotFound Code = "not_found"
	// CodeUnknownTarget: an optimize or stats target names no pool the
	// daemon knows, nor a VM or volume in one.
	CodeUnknownTarget Code = "unknown_target"
	// CodeNotStopped: the volume is dirty (running, or not cleanly stopped).
	CodeNotStopped Code = "not_stopped"
	// CodeReadOnly: the operation needs a read-write volume.
	CodeReadOnly Code = "read_only"
	// CodeNotSupported: the operation does not apply to this kind of volume,
	// or the filesystem lacks a needed feature (reflinks).
	CodeNotSupported Code = "not_supported"
	// CodeNoSpace: the filesystem is full; nothing was changed.
	CodeNoSpace Code = "no_space"
	// CodeBusy: the filesystem refused for now (for example a running send).
	CodeBusy Code = "busy"
	// CodeIO: any other operating-system error.
	CodeIO Code = "io_error"
	// CodeInternal: a bug in the daemon.
	CodeInternal Code = "internal"
)

// Codes lists every code, for the schema and the tests.
var Codes = []Code{
	CodeBadRequest, CodeUnsupportedProtocol, CodePermissionDenied,
	CodeInvalidName, CodeNotFound, CodeUnknownTarget, CodeNotStopped, CodeReadOnly,
	CodeNotSupported, CodeNoSpace, CodeBusy, CodeIO, CodeInternal,
}
