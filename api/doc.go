// SPDX-License-Identifier: GPL-2.0-or-later

// Package api is the one definition of the protocol between btrfs-vdod and
// its clients: the qubesd shim (Python) and the btrfs-vdo CLI.
//
// # Framing
//
// A client connects to the daemon's Unix stream socket, writes one request
// as a single line of JSON terminated by '\n', and reads one response line.
// The daemon then closes the connection. A request line longer than
// MaxFrameBytes is refused and the connection closed.
//
//	request:  {"v": 1, "op": "volume.start", "args": {...}}
//	success:  {"ok": true, "result": {...}}
//	failure:  {"ok": false, "error": {"code": "not_stopped", "message": "..."}}
//
// "v" is ProtocolVersion. A daemon answers a request of another version with
// the code CodeUnsupportedProtocol, so an old shim and a new daemon fail
// loudly instead of misreading each other. Unknown fields are refused in
// both directions: golden files in testdata/ops pin every exchange, and both
// the Go and the Python tests check them. Keys are case-sensitive, and the
// daemon answers CodeBadRequest to a request with a key it does not know
// or a key given twice in one object, at any depth, rather than guess
// which of two values was meant.
//
// # Volumes
//
// The daemon keeps no copy of qubesd's volume configuration: every volume
// request carries the pool (name, dir_path) and the volume's current
// properties (Volume), because qubesd changes rw and revisions_to_keep
// without telling the driver. The daemon derives every file name from
// dir_path and the vid, using the file-reflink layout, and serializes the
// requests for one vid.
//
// Every volume operation except export, export_end and import_data answers
// with a VolumeState, so the shim can refresh what it caches (the recorded
// size of a volatile volume, for example).
package api
