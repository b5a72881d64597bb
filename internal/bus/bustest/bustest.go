// SPDX-License-Identifier: GPL-2.0-or-later

// Package bustest runs a private dbus-daemon for tests, with stand-ins for
// the two system services btrfs-vdod talks to: logind, which hands out
// inhibitor locks, and UPower, which says whether the machine is on
// battery. The stand-ins answer exactly the calls btrfs-vdod makes.
package bustest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// openPolicy lets every peer own any name and call anything: for tests of
// behavior, not of policy.
const openPolicy = `<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>`

// systemPolicy is the default policy of Debian's and Fedora's system bus
// (/usr/share/dbus-1/system.conf): nobody owns names or receives calls
// unless a policy file allows it. Root may own the stand-ins' names.
const systemPolicy = `<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root">
    <allow own="org.freedesktop.login1"/>
    <allow own="org.freedesktop.UPower"/>
    <allow send_destination="org.freedesktop.login1"/>
    <allow send_destination="org.freedesktop.UPower"/>
  </policy>`

// readyTimeout bounds how long dbus-daemon may take to start listening.
const readyTimeout = 10 * time.Second

// Bus is a running private dbus-daemon.
type Bus struct {
	// Address is the bus address, for DBUS_SYSTEM_BUS_ADDRESS or
	// busctl --address; Restart changes its guid.
	Address string

	conf string
	cmd  *exec.Cmd
}

// Start runs a dbus-daemon that allows everything until t ends.
func Start(t testing.TB) *Bus {
	t.Helper()
	return start(t, openPolicy)
}

// StartSystem runs a dbus-daemon with the system bus's default policy plus
// the policy files given, as the system bus reads /usr/share/dbus-1/system.d.
// Its socket can be reached by any user, so tests can check what an
// unprivileged peer may do.
func StartSystem(t testing.TB, policyFiles ...string) *Bus {
	t.Helper()
	var includes strings.Builder
	for _, f := range policyFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&includes, "  <include>%s</include>\n", abs)
	}
	return start(t, systemPolicy+"\n"+includes.String())
}

func start(t testing.TB, policy string) *Bus {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Fatalf("dbus-daemon is needed (Debian package dbus-daemon; make deps installs it): %v", err)
	}
	dir := t.TempDir()
	// t.TempDir makes two levels of 0700 directories; unprivileged peers
	// must reach the socket.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := &Bus{conf: filepath.Join(dir, "bus.conf")}
	text := fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  %s
</busconfig>
`, filepath.Join(dir, "bus.sock"), policy)
	if err := os.WriteFile(b.conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run(t)
	t.Cleanup(b.Kill)
	return b
}

// run starts dbus-daemon and waits until it listens.
func (b *Bus) run(t testing.TB) {
	t.Helper()
	cmd := exec.Command("dbus-daemon", "--config-file="+b.conf, "--nofork", "--nopidfile", "--nosyslog", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	b.cmd = cmd
	// dbus-daemon prints its address once it listens.
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			t.Fatalf("dbus-daemon exited: %s", stderr.String())
		}
		b.Address = a
	case <-time.After(readyTimeout):
		t.Fatalf("dbus-daemon did not start within %s: %s", readyTimeout, stderr.String())
	}
}

// Kill stops the bus as a crash would: every connection drops.
func (b *Bus) Kill() {
	if b.cmd != nil {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		b.cmd = nil
	}
}

// Restart kills the bus and starts a new one at the same socket, with
// none of the old one's names, connections or match rules.
func (b *Bus) Restart(t testing.TB) {
	t.Helper()
	b.Kill()
	b.run(t)
}

// Conn opens a new connection to the bus, closed when t ends.
func (b *Bus) Conn(t testing.TB) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connect to the test bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// own makes conn the owner of name.
func own(t testing.TB, conn *dbus.Conn, name string) {
	t.Helper()
	reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: reply %v, %v", name, reply, err)
	}
}
