// SPDX-License-Identifier: GPL-2.0-or-later

package powercut

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// Through the kernel: a write reaches the device uncached, an fsync is a
// flush, and a cut ordered over the control socket drops what was not
// fsynced.
func TestFUSEDiskThroughTheKernel(t *testing.T) {
	btrfstest.RequireRoot(t)
	dev, store := openDevice(t, 0)
	mnt := t.TempDir()
	server, err := Mount(mnt, dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Error(err)
		}
	})
	ctl := startControl(t, dev)

	disk, err := os.OpenFile(filepath.Join(mnt, DiskName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	if _, err := disk.WriteAt(fill('a', blockSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := disk.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := disk.WriteAt(fill('b', blockSize), blockSize); err != nil {
		t.Fatal(err)
	}
	if got := dev.Status(); got.Flushes != 1 || got.Pending != 1 {
		t.Fatalf("after one fsync and one write: %+v", got)
	}
	if got := ask(t, ctl, "cut"); got != "ok" {
		t.Fatalf("cut: %q", got)
	}
	var s Status
	if err := json.Unmarshal([]byte(ask(t, ctl, "status")), &s); err != nil || !s.Dead || s.Pending != 1 {
		t.Fatalf("status after the cut: %+v (%v)", s, err)
	}
	if got := readAt(t, disk, blockSize, blockSize); !bytes.Equal(got, fill('b', blockSize)) {
		t.Error("the disk does not read back an unflushed write")
	}
	if got := readAt(t, store, 0, 2*blockSize); !bytes.Equal(got, append(fill('a', blockSize), make([]byte, blockSize)...)) {
		t.Error("the store does not hold exactly the fsynced write")
	}
	if got := ask(t, ctl, "cut-at x"); !strings.HasPrefix(got, "error: ") {
		t.Errorf("a bad command answered %q", got)
	}
}

func startControl(t *testing.T, dev *Device) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go Control(ln, dev)
	return path
}

func ask(t *testing.T, path, cmd string) string {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}
