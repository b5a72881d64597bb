// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

// Started describes an origin volume whose dirty image the VM is about to
// use, made from the clean image Clean. Reused is set when the dirty
// image was left by an earlier start that was never stopped.
type Started struct {
	VID    string
	Clean  File
	Dirty  File
	Reused bool
}

// Committed describes a commit that has landed: Clean is the new clean
// image.
type Committed struct {
	VID   string
	Clean File
	// Precache is false when the volume keeps no precache (snapshots
	// disabled), so nothing must make one later.
	Precache bool
	// Imported is set when the new image is an import's, which may share
	// data, as old as any, with files outside the volume.
	Imported bool
}

// Hooks let the pool follow what the store does. They run with the
// volume's lock held (Starting excepted), so they must only record or
// queue work, never wait for it. Any may be nil.
type Hooks struct {
	// Starting is called when a start of the volume is asked for, before
	// it waits for the volume's lock, which work on the volume's files
	// (Locked) may hold: the pool stops that work before its next step
	// under the lock, so that the start waits for one step at most.
	Starting func(vid string)
	// Started is called when an origin volume has started.
	Started func(Started)
	// Committed is called after each durable commit. It returns true when
	// the pool will optimize the new data and make the precache itself
	// afterwards (MakePrecache): a precache made now would pin the
	// commit's extents as they are.
	Committed func(Committed) (precacheLater bool)
	// Writing is called when an operation that changes files begins; the
	// function it returns is called when the operation ends. It lets the
	// daemon hold off a shutdown while image files are being written.
	Writing func(op, vid string) (done func())
	// Removed is called when a volume's files are gone.
	Removed func(vid string)
	// Reverted is called when a revert has put a revision in place of
	// the clean image.
	Reverted func(vid string)
}

// Store manages the volumes of one pool directory.
type Store struct {
	files files
	log   *slog.Logger
	hooks Hooks
	locks keyedMutex // by vid: one operation per volume at a time
	// dirs is by volume directory: every operation holds it shared, so
	// that the removal of a sibling volume, which takes it exclusively to
	// remove the directory when it has become empty, can never take the
	// directory from under a file being made or removed in it.
	dirs keyedMutex
	// trash deletes pruned revisions after their commit returned.
	trash *trash
}

// Open opens the pool directory dir, which must be an existing absolute
// path.
func Open(dir string, log *slog.Logger, hooks Hooks) (*Store, error) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return nil, fmt.Errorf("%w: pool directory %q must be a clean absolute path", ErrInvalidName, dir)
	}
	root, err := fsroot.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open pool directory: %w", err)
	}
	if hooks.Starting == nil {
		hooks.Starting = func(string) {}
	}
	if hooks.Started == nil {
		hooks.Started = func(Started) {}
	}
	if hooks.Committed == nil {
		hooks.Committed = func(Committed) bool { return false }
	}
	if hooks.Removed == nil {
		hooks.Removed = func(string) {}
	}
	if hooks.Reverted == nil {
		hooks.Reverted = func(string) {}
	}
	if hooks.Writing == nil {
		hooks.Writing = func(string, string) func() { return func() {} }
	}
	s := &Store{files: files{root: root}, log: log, hooks: hooks}
	s.trash = newTrash(s.files, log)
	s.trash.emptySoon() // what a daemon that died left there
	return s, nil
}

// Dir is the pool directory.
func (s *Store) Dir() string { return s.files.root.Name() }

// Close releases the pool directory.
func (s *Store) Close() error {
	s.trash.close()
	return s.files.root.Close()
}

// WaitPruned waits until the revisions commits pruned from vid, and
// those an earlier daemon left to delete, are deleted: until then they
// still reference its image's extents, which would look shared with
// something beyond the volume. Revisions are deleted in the order they
// were pruned, and those of other volumes pruned after vid's are not
// waited for: of VMs stopped together, the first job need not wait for
// them all.
func (s *Store) WaitPruned(vid string) { s.trash.waitFor(vid) }

// Release lets go of the pool directory's descriptor unless an operation
// uses it, so that an idle store does not keep its filesystem busy; the
// next operation opens the directory again, and fails if another one
// stands at its path now.
func (s *Store) Release() error { return s.files.root.Release() }

// readOnlyOps change no file; every other op is reported to Hooks.Writing.
var readOnlyOps = map[string]bool{"query": true, "verify": true, "export": true}

// volumeOp runs fn for spec's volume under the volume's lock, with the
// volume's paths, and wraps any failure as an OpError for op.
func (s *Store) volumeOp(op string, spec Spec, fn func(p Paths) error) error {
	p, err := PathsFor(spec.VID)
	if err == nil && spec.SaveOnStop && spec.SnapOnStart {
		err = fmt.Errorf("%w: save_on_stop volumes that snapshot on start", ErrNotSupported)
	}
	if err == nil && spec.Source != "" {
		err = ValidateVID(spec.Source)
	}
	if err == nil && spec.Size < 0 {
		err = fmt.Errorf("%w: negative size %d", ErrInvalidName, spec.Size)
	}
	if err != nil {
		return opError(op, spec.VID, err)
	}
	defer s.trash.emptyQueued() // once the volume is unlocked: see trash
	unlock := s.locks.lock(spec.VID)
	defer unlock()
	defer s.dirs.rlock(p.Dir)()
	if !readOnlyOps[op] {
		defer s.hooks.Writing(op, spec.VID)()
	}
	return opError(op, spec.VID, fn(p))
}

// keyedMutex is a read-write lock per key that forgets keys nobody holds.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.RWMutex
	refs int
}

// lock takes key's lock exclusively.
func (k *keyedMutex) lock(key string) (unlock func()) {
	m := k.ref(key)
	m.Lock()
	return func() { m.Unlock(); k.unref(key, m) }
}

// rlock takes key's lock shared.
func (k *keyedMutex) rlock(key string) (unlock func()) {
	m := k.ref(key)
	m.RLock()
	return func() { m.RUnlock(); k.unref(key, m) }
}

func (k *keyedMutex) ref(key string) *refMutex {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	return m
}

func (k *keyedMutex) unref(key string, m *refMutex) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if m.refs--; m.refs == 0 {
		delete(k.locks, key)
	}
}
