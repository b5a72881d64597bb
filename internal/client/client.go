// SPDX-License-Identifier: GPL-2.0-or-later

// Package client calls btrfs-vdod over its socket with the api types; the
// CLI and the integration tests use it.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// Client talks to the daemon listening on Socket.
type Client struct {
	Socket string
}

// New returns a client for socket, or for $BTRFS_VDO_SOCKET, or for the
// default socket, in that order.
func New(socket string) *Client {
	if socket == "" {
		socket = os.Getenv(api.SocketEnv)
	}
	if socket == "" {
		socket = api.DefaultSocket
	}
	return &Client{Socket: socket}
}

// Call sends op with args and decodes the result into result (a pointer, or
// nil to discard it). A daemon error is returned as *api.Error.
func (c *Client) Call(ctx context.Context, op api.Op, args, result any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return fmt.Errorf("btrfs-vdod is not reachable at %s: %w", c.Socket, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	rawArgs, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("encode %s arguments: %w", op, err)
	}
	line, err := json.Marshal(api.Request{V: api.ProtocolVersion, Op: op, Args: rawArgs})
	if err != nil {
		return fmt.Errorf("encode %s request: %w", op, err)
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("send %s request: %w", op, err)
	}
	reply, err := bufio.NewReaderSize(conn, 64*1024).ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read %s response: %w", op, err)
	}
	var resp api.Response
	if err := json.Unmarshal(reply, &resp); err != nil {
		return fmt.Errorf("decode %s response: %w", op, err)
	}
	if !resp.OK {
		if resp.Error == nil {
			return fmt.Errorf("%s failed without an error", op)
		}
		return resp.Error
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, result); err != nil {
		return fmt.Errorf("decode %s result: %w", op, err)
	}
	return nil
}
