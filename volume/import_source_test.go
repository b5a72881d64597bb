// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestImportRefusesSourcesThatBlock: a pipe blocks the open until a
// writer comes and the reads until it writes, and a character device
// like /dev/zero has no size. Each is refused at once, and the volume's
// lock is free again.
func TestImportRefusesSourcesThatBlock(t *testing.T) {
	h := newHarness(t)
	fifo := filepath.Join(t.TempDir(), "export.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	spec := origin("appvms/clone/private", 1)
	h.must(h.store.Create(spec))
	for _, source := range []string{fifo, "/dev/zero"} {
		t.Run(source, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := h.store.ImportVolume(context.Background(), spec, source)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, volume.ErrNotSupported) {
					t.Fatalf("import from %s: %v, want ErrNotSupported", source, err)
				}
			case <-time.After(10 * time.Second):
				unblock(fifo) // let the hung import end before the pool is unmounted
				<-done
				t.Fatalf("import from %s did not return", source)
			}
			h.must(h.store.Info(spec))
			h.assertFiles(map[string]bool{"appvms/clone/private-import.img": false})
		})
	}
}

// unblock opens the fifo for writing and closes it: a reader waiting in
// its open goes on and reads the end of the file.
func unblock(fifo string) {
	if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
		f.Close()
	}
}

// TestImportStopsWhenCancelled: a sparse copy (here from another
// filesystem) ends when the caller's context is done, and leaves the
// volume as it was: no import image, no temp file, the same revisions.
func TestImportStopsWhenCancelled(t *testing.T) {
	h := newHarness(t)
	source := filepath.Join(t.TempDir(), "foreign.img")
	if err := os.WriteFile(source, pattern(13, 4*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := origin("appvms/work/private", 2)
	sums := h.committedThrice(spec)
	before := h.revisionFiles()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.store.ImportVolume(ctx, spec, source); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled import: %v, want context.Canceled", err)
	}
	if after := h.revisionFiles(); !maps.Equal(after, before) {
		t.Fatalf("cancelled import changed the revisions:\nbefore %v\nafter  %v", before, after)
	}
	if h.sum("appvms/work/private.img") != sums[2] {
		t.Fatal("cancelled import changed the image")
	}
	entries, err := os.ReadDir(h.path("appvms/work"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name := e.Name(); name == "private-import.img" || strings.Contains(name, "~") {
			t.Errorf("cancelled import left %s", name)
		}
	}
}
