// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
)

// knownFile, in the daemon's state directory, lists the pools the daemon
// serves, so that it opens them at start, and keeps the optimizer's
// totals and recent outcomes. What belongs to one pool stays in the
// pool's own state.
const knownFile = "pools.json"

const knownVersion = 1

// knownPool is a pool directory the daemon served: its device and inode
// tell it from another directory made at the same path since.
type knownPool struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
}

type knownState struct {
	Version  int                `json:"version"`
	Pools    []knownPool        `json:"pools"`
	Counters optimizer.Counters `json:"counters"`
	Recent   []jobRecord        `json:"recent"`
}

// jobRecord is a JobDone as written: its error as text.
type jobRecord struct {
	ID       uint64           `json:"id"`
	Pool     string           `json:"pool"`
	Dir      string           `json:"dir"`
	VID      string           `json:"vid"`
	Finished time.Time        `json:"finished"`
	Result   optimizer.Result `json:"result"`
	Err      string           `json:"error,omitempty"`
}

func recordOf(d optimizer.JobDone) jobRecord {
	r := jobRecord{ID: d.ID, Pool: d.Pool, Dir: d.Dir, VID: d.VID, Finished: d.Finished, Result: d.Result}
	if d.Err != nil {
		r.Err = d.Err.Error()
	}
	return r
}

func (r jobRecord) done() optimizer.JobDone {
	d := optimizer.JobDone{ID: r.ID, Pool: r.Pool, Dir: r.Dir, VID: r.VID, Finished: r.Finished, Result: r.Result}
	if r.Err != "" {
		d.Err = errors.New(r.Err)
	}
	return d
}

// loadKnown reads the file in dir; a missing file is an empty list, and a
// torn or foreign one is set aside and treated as empty: the pools are
// then opened again as qubesd uses them.
func loadKnown(dir string) (knownState, error) {
	path := filepath.Join(dir, knownFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return knownState{Version: knownVersion}, nil
	}
	if err != nil {
		return knownState{}, fmt.Errorf("read %s: %w", path, err)
	}
	var k knownState
	if err := json.Unmarshal(data, &k); err != nil || k.Version != knownVersion {
		if renameErr := os.Rename(path, path+".bad"); renameErr != nil {
			return knownState{}, fmt.Errorf("set aside unreadable %s: %w", path, renameErr)
		}
		return knownState{Version: knownVersion}, nil
	}
	return k, nil
}

func saveKnown(dir string, k knownState) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", knownFile, err)
	}
	root, err := fsroot.Open(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return root.WriteFileDurably(knownFile, data)
}

// identify returns the device and inode of the directory at dir. A
// symlink is followed, as file-reflink follows it: a pool directory moved
// to another disk and linked from its old path is served through the
// link, and one re-pointed is another directory.
func identify(dir string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, 0, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, 0, fmt.Errorf("pool directory %s is not a directory", dir)
	}
	return uint64(st.Dev), st.Ino, nil
}

// withPool returns the list with p recorded, replacing any entry for the
// same directory.
func withPool(pools []knownPool, p knownPool) []knownPool {
	pools = slices.DeleteFunc(slices.Clone(pools), func(k knownPool) bool { return k.Dir == p.Dir })
	return append(pools, p)
}

// knownSaveDelay lets the totals of a burst of finished jobs be written
// once; a crash loses at most this much of them.
const knownSaveDelay = time.Second

// remember keeps the pools the daemon serves, and the optimizer's totals
// and recent outcomes, in dir across restarts.
func (r *Registry) remember(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("state directory %q is not a clean absolute path", dir)
	}
	k, err := loadKnown(dir)
	if err != nil {
		return err
	}
	r.stateDir, r.remembered = dir, k
	if r.optimizer != nil {
		recent := make([]optimizer.JobDone, 0, len(k.Recent))
		for _, rec := range k.Recent {
			recent = append(recent, rec.done())
		}
		r.optimizer.Restore(k.Counters, recent)
	}
	return nil
}

// Restore opens the pools the daemon served before it restarted, which
// resumes their pending jobs. A directory that is gone is forgotten; one
// replaced by another (another device or inode) is opened as what it is
// now. Either is logged.
func (r *Registry) Restore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range slices.Clone(r.remembered.Pools) {
		dev, ino, err := identify(k.Dir)
		if err != nil {
			r.log.Warn("forgetting pool: its directory is gone", "pool", k.Name, "dir", k.Dir, "err", err)
			r.forgetLocked(k.Dir)
			continue
		}
		if dev != k.Dev || ino != k.Ino {
			r.log.Warn("pool directory was replaced since the daemon last served it; opening the new one",
				"pool", k.Name, "dir", k.Dir)
		}
		p, err := r.openLocked(k.Name, k.Dir)
		if err != nil {
			r.log.Error("cannot open pool", "pool", k.Name, "dir", k.Dir, "err", err)
			continue
		}
		r.rememberLocked(p)
	}
}

// current returns the pool to serve in place of p: p while its
// directory is the one it opened, the pool made at its path since (p is
// closed), or nil once the directory is gone (p is closed and forgotten).
// A pool is never served through a handle on a directory that is no
// longer at its path.
func (r *Registry) current(p *Pool) *Pool {
	dev, ino, err := identify(p.id.Dir)
	if err == nil && dev == p.id.Dev && ino == p.id.Ino {
		return p
	}
	if closeErr := r.closeLocked(p); closeErr != nil {
		r.log.Warn("cannot close pool", "pool", p.Name, "dir", p.id.Dir, "err", closeErr)
	}
	if err != nil {
		r.log.Warn("forgetting pool: its directory is gone", "pool", p.Name, "dir", p.id.Dir, "err", err)
		r.forgetLocked(p.id.Dir)
		return nil
	}
	r.log.Warn("pool directory is not the one opened (replaced or remounted); closed it, opening what stands there now", "pool", p.Name, "dir", p.id.Dir)
	fresh, err := r.openLocked(p.Name, p.id.Dir)
	if err != nil {
		r.log.Error("cannot open pool", "pool", p.Name, "dir", p.id.Dir, "err", err)
		return nil
	}
	r.rememberLocked(fresh)
	return fresh
}

// closeLocked closes p and drops it from the open pools and the
// scheduler; its pending jobs stay in its state.
func (r *Registry) closeLocked(p *Pool) error {
	delete(r.pools, p.id.Dir)
	return errors.Join(p.Optimizer.Close(), p.stateDir.Close(), p.dir.Close())
}

// rememberLocked records p among the known pools, written at once when
// that changes the list: a pool set up just before a crash is remembered.
func (r *Registry) rememberLocked(p *Pool) {
	if r.stateDir == "" || slices.Contains(r.remembered.Pools, p.id) {
		return
	}
	r.remembered.Pools = withPool(r.remembered.Pools, p.id)
	if err := r.saveKnownLocked(); err != nil {
		r.log.Warn("cannot record pool", "pool", p.Name, "dir", p.id.Dir, "err", err)
	}
}

func (r *Registry) forgetLocked(dir string) {
	if r.stateDir == "" {
		return
	}
	r.remembered.Pools = slices.DeleteFunc(r.remembered.Pools, func(k knownPool) bool { return k.Dir == dir })
	if err := r.saveKnownLocked(); err != nil {
		r.log.Warn("cannot forget pool", "dir", dir, "err", err)
	}
}

// saveTotalsSoon has the optimizer's totals and recent outcomes written
// within knownSaveDelay.
func (r *Registry) saveTotalsSoon() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stateDir == "" || r.saveSoon != nil {
		return
	}
	r.saveSoon = time.AfterFunc(knownSaveDelay, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.saveSoon == nil {
			return // written meanwhile
		}
		if err := r.saveKnownLocked(); err != nil {
			r.log.Warn("cannot save optimizer totals", "err", err)
		}
	})
}

func (r *Registry) saveKnownLocked() error {
	if r.saveSoon != nil {
		r.saveSoon.Stop()
		r.saveSoon = nil
	}
	if r.stateDir == "" {
		return nil
	}
	r.remembered.Version = knownVersion
	if r.optimizer != nil {
		r.remembered.Counters = r.optimizer.Counters()
		r.remembered.Recent = r.remembered.Recent[:0]
		for _, d := range r.optimizer.Recent() {
			r.remembered.Recent = append(r.remembered.Recent, recordOf(d))
		}
	}
	return saveKnown(r.stateDir, r.remembered)
}
