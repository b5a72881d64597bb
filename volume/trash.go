// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// trashDir, beneath StateDir, holds the revisions a commit pruned until
// they are deleted in the background. Deleting an image's last name frees
// its extent items, about 5 µs each, inside the call: half a second for
// a 12 GiB image of 128 KiB compressed extents, which a VM's shutdown
// must not wait for. Moving it here is one rename.
var trashDir = path.Join(StateDir, "trash")

// trash deletes what commits put in trashDir, one file at a time, in a
// goroutine of its own.
type trash struct {
	files files
	log   *slog.Logger
	seq   atomic.Uint64 // names the files put in the trash

	mu sync.Mutex
	// queued: something was put in the trash that no emptying has been
	// asked for yet; the operation asks once it has released its locks.
	// Kept with emptying under mu, so that waitFor sees one or the other.
	queued   bool
	again    bool // something was put in the trash since it looked
	closed   bool // the store closed: the next Open empties the trash
	emptying bool // an emptying runs
	// deleted is signalled as files are deleted and as an emptying ends.
	deleted *sync.Cond
	// owners are the volumes of the files this store puts or has put in
	// the trash and not yet deleted, by trash name, so that a job waits
	// for its own volume's revisions only.
	owners map[string]string
	// leftovers: the trash may hold what an earlier daemon left, of
	// volumes unknown, which every waiter waits for until an emptying has
	// been through the trash.
	leftovers bool
}

func newTrash(f files, log *slog.Logger) *trash {
	t := &trash{files: f, log: log, owners: map[string]string{}, leftovers: true}
	t.deleted = sync.NewCond(&t.mu)
	return t
}

// put moves name, a file of volume vid, into the trash. A crash before
// the trash is emptied leaves it there, where the next Open finds it.
func (t *trash) put(vid, name string) error {
	id := strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + strconv.FormatUint(t.seq.Add(1), 10)
	// Owned before it is there: an emptying may delete it as soon as it is.
	t.mu.Lock()
	t.owners[id] = vid
	t.mu.Unlock()
	to := path.Join(trashDir, id)
	err := t.files.rename(name, to)
	if errors.Is(err, fs.ErrNotExist) {
		// No trash yet (the pool's first pruned revision), or no name:
		// the rename tells which once the trash exists.
		if err := t.makeDir(); err != nil {
			t.forget(id)
			return err
		}
		err = t.files.rename(name, to)
	}
	if !renamed(err) {
		t.forget(id)
		return err
	}
	t.mu.Lock()
	t.queued = true
	t.mu.Unlock()
	return err
}

// makeDir makes the trash directory and StateDir above it.
func (t *trash) makeDir() error {
	for _, dir := range []string{StateDir, trashDir} {
		if err := t.files.root.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", t.files.abs(dir), err)
		}
	}
	return nil
}

// emptyQueued empties the trash if something was put in it since the
// last emptying was asked for. Deleting competes with the rest of the
// operation for the filesystem, so it waits for the operation's end.
func (t *trash) emptyQueued() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queued {
		t.queued = false
		t.emptySoonLocked()
	}
}

// emptySoon deletes what the trash holds, without waiting for it.
func (t *trash) emptySoon() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.emptySoonLocked()
}

func (t *trash) emptySoonLocked() {
	if t.closed {
		return
	}
	if t.emptying {
		t.again = true
		return
	}
	t.emptying = true
	go func() {
		for t.empty(); t.lookAgain(); {
			t.empty()
		}
	}()
}

// lookAgain reports whether something was put in the trash while empty
// ran, and otherwise ends the emptying.
func (t *trash) lookAgain() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.again {
		t.again = false
		return true
	}
	t.emptying = false
	t.deleted.Broadcast()
	return false
}

// empty deletes every file in the trash, in the order the directory
// lists them, which on btrfs is the order they were put there. A failure
// is logged; the next emptying tries again.
func (t *trash) empty() {
	defer t.wentThrough()
	entries, err := t.files.readDir(trashDir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.log.Warn("cannot list pruned revisions to delete", "err", err)
		return
	}
	for _, e := range entries {
		name := path.Join(trashDir, e.Name())
		if err := t.files.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.log.Warn("cannot delete pruned revision", "file", t.files.abs(name), "err", err)
		}
		t.forget(e.Name())
	}
}

// wentThrough tells waiters that an emptying has been through the trash:
// what an earlier daemon left is gone, or left for the next emptying.
func (t *trash) wentThrough() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leftovers = false
	t.deleted.Broadcast()
}

// forget stops waiters counting the trash file id, deleted or not: one
// that could not be deleted is retried by the next emptying, which no
// job need wait for.
func (t *trash) forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.owners[id]; ok { // else left by an earlier daemon
		delete(t.owners, id)
		t.deleted.Broadcast()
	}
}

// waitFor empties the trash and waits until the files vid put in it, and
// any an earlier daemon left, are deleted, or the emptying ended without
// them. Files other volumes put there after vid's are not waited for.
func (t *trash) waitFor(vid string) {
	t.emptyQueued()
	t.mu.Lock()
	defer t.mu.Unlock()
	for (t.owns(vid) || t.leftovers) && t.emptying {
		t.deleted.Wait()
	}
}

// owns reports, under mu, whether vid has files in the trash.
func (t *trash) owns(vid string) bool {
	for _, owner := range t.owners {
		if owner == vid {
			return true
		}
	}
	return false
}

// close waits for the emptying under way, and starts none after it.
func (t *trash) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for t.emptying {
		t.deleted.Wait()
	}
}
