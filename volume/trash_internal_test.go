// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
)

func openTrash(t *testing.T) (*trash, string) {
	t.Helper()
	dir := t.TempDir()
	root, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return newTrash(files{root: root}, logtest.Discard()), dir
}

// Commits may put files in the trash and ask for it to be emptied while
// jobs wait for it and while the store closes: none of it may race or
// hang, and nothing runs after close.
func TestTrashPutsEmptiesWaitsAndClosesConcurrently(t *testing.T) {
	tr, dir := openTrash(t)
	var wg sync.WaitGroup
	for g := range 4 {
		vid := fmt.Sprintf("appvms/vm%d/private", g)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 50 {
				name := fmt.Sprintf("f%d-%d", g, i)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o600); err != nil {
					t.Error(err)
					return
				}
				if err := tr.put(vid, name); err != nil {
					t.Error(err)
					return
				}
				tr.emptyQueued()
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				tr.waitFor(vid)
			}
		}()
	}
	tr.close()
	wg.Wait()
	tr.emptySoon()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.emptying {
		t.Error("the trash is emptied after the store closed")
	}
}

// While an emptying runs, a waiter waits for its own volume's files and
// for what an earlier daemon left, and for nothing else.
func TestTrashWaitForWaitsForItsVolumeAndLeftoversOnly(t *testing.T) {
	tr, _ := openTrash(t)
	tr.emptying = true // an emptying under way, driven by hand
	tr.owners["1-1"] = "appvms/b/private"
	waiting := func(vid string) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			tr.waitFor(vid)
			close(done)
		}()
		return done
	}
	returns := func(what string, done <-chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("waitFor did not return %s", what)
		}
	}
	blocked := func(what string, done <-chan struct{}) {
		t.Helper()
		select {
		case <-done:
			t.Fatalf("waitFor returned %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}

	a, b := waiting("appvms/a/private"), waiting("appvms/b/private")
	blocked("for a before the leftovers were gone", a)
	tr.wentThrough()
	returns("for a once the leftovers were gone, with b's file still there", a)
	blocked("for b with its file still there", b)
	tr.forget("1-1")
	returns("for b once its file was deleted", b)
	if len(tr.owners) != 0 {
		t.Errorf("owners %v after the only file was deleted", tr.owners)
	}
}
