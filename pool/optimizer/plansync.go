// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// commitClock is the last transaction commit a job of the pool made: when
// it began, and the generation from which extents are written after it.
// A plan needs a commit that began after its files last changed, and
// takes this one when it did: when VMs stop together, each job's plan
// takes the commit the job before it made at its end.
type commitClock struct {
	mu    sync.Mutex
	began time.Time
	gen   uint64
}

// commitAfter returns the generation after a commit of the pool's
// filesystem that began after t (btrfs.SyncGeneration): the last one a
// job made when it did, else a new one, and whether it made one.
func (p *Pool) commitAfter(t time.Time) (gen uint64, made bool, err error) {
	c := &p.lastCommit
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.began.After(t) {
		return c.gen, false, nil
	}
	dir, err := p.openDir()
	if err != nil {
		return 0, false, err
	}
	defer dir.Close()
	began := time.Now()
	if gen, err = btrfs.SyncGeneration(dir); err != nil {
		return 0, false, err
	}
	c.began, c.gen = began, gen
	return gen, true, nil
}

// plannedFile is a file a job plans, as it was before the plan's commit:
// its inode, and when it last changed.
type plannedFile struct {
	ino     uint64
	changed time.Time
}

// syncFor makes sure a commit covers target before it is planned, without
// the volume's lock, which a start would wait for: the file's data gets
// its extents, and extent reference counts, which decide whether an
// extent is shared and lag until committed, are current. It returns the
// file as it was: only the job changes that file in place (a commit,
// revert or import puts another file there), so if the planned file has
// that inode, the commit covered it; if not, the planning commits again
// under the lock.
func (p *Pool) syncFor(target volume.File) (plannedFile, bool, error) {
	var pf plannedFile
	info, err := p.Volumes.Stat(target)
	switch {
	case err == nil:
		st := info.Sys().(*syscall.Stat_t)
		pf.ino, pf.changed = st.Ino, time.Unix(st.Ctim.Unix())
	case errors.Is(err, fs.ErrNotExist):
		pf.changed = time.Now()
	default:
		return pf, false, err
	}
	_, made, err := p.commitAfter(pf.changed.Add(ctimeSlack))
	return pf, made, err
}

// syncIfReplaced returns f's inode, first committing the transaction again
// if f is not the file syncFor saw (inode synced).
func syncIfReplaced(f *os.File, synced uint64) (uint64, error) {
	ino, err := compress.InodeOf(f)
	if err != nil || ino == synced {
		return ino, err
	}
	return ino, btrfs.Sync(f)
}
