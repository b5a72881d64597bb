// SPDX-License-Identifier: GPL-2.0-or-later

// Package server answers the api protocol on a Unix socket: it checks the
// peer, reads one request frame, calls the pool and volume layers, and
// translates their errors into stable api codes.
package server
