// SPDX-License-Identifier: GPL-2.0-or-later

package powercut

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Control answers a test driver on a Unix socket, one command a
// connection, one line each way:
//
//	status      the Status as JSON
//	cut-at N    cut the power at the Nth flush from now; answers "ok"
//	cut         cut the power now; answers "ok"
//
// An error is answered as "error: ...".
func Control(ln net.Listener, dev *Device) error {
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("powercut: accept control connection: %w", err)
		}
		go answer(conn, dev)
	}
}

func answer(conn net.Conn, dev *Device) {
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return
	}
	reply, err := command(dev, strings.Fields(line))
	if err != nil {
		reply = "error: " + err.Error()
	}
	fmt.Fprintln(conn, reply)
}

func command(dev *Device, args []string) (string, error) {
	switch {
	case len(args) == 1 && args[0] == "status":
		out, err := json.Marshal(dev.Status())
		return string(out), err
	case len(args) == 2 && args[0] == "cut-at":
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return "", fmt.Errorf("cut-at %q: %w", args[1], err)
		}
		return "ok", dev.CutAt(n)
	case len(args) == 1 && args[0] == "cut":
		return "ok", dev.Cut()
	}
	return "", fmt.Errorf("unknown command %q", strings.Join(args, " "))
}
