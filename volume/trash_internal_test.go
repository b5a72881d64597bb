// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"sync"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
)

// Commits may ask for the trash to be emptied while a job waits for it and
// while the store closes: none of it may race, and nothing runs after close.
func TestTrashEmptiesWaitsAndClosesConcurrently(t *testing.T) {
	root, err := fsroot.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	tr := newTrash(files{root: root}, logtest.Discard())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 200 {
				tr.emptySoon()
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				tr.waitFor("appvms/work/private")
			}
		}()
	}
	tr.close()
	wg.Wait()
	tr.emptySoon()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.idle != nil {
		t.Error("the trash is emptied after the store closed")
	}
}
