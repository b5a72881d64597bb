// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// indexName is the dedup index's file under the pool's StateDir.
const indexName = "dedup.idx"

// IndexSizes sizes the pools' dedup indexes, in bytes, each a positive
// multiple of 4 KiB.
type IndexSizes struct {
	// Default is every pool's size; 0 sizes each index by its pool's
	// data (dedupindex.DefaultSize), growing it as the data grows.
	Default uint64
	// Pools overrides Default for the pools at these directories.
	Pools map[string]uint64
}

// indexAccount is the scheduler's side of its pools' indexes: the sizes
// they are to have and the bytes the open ones hold, with those of the
// zstd encoders' tables (hold), which the memory limit follows too.
type indexAccount struct {
	mu     sync.Mutex
	sizes  IndexSizes
	open   uint64             // including those opening
	report func(total uint64) // nil: nobody asked
}

// sizeFor returns the configured size of the index of the pool at dir, 0
// for the default.
func (a *indexAccount) sizeFor(dir string) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, ok := a.sizes.Pools[dir]; ok {
		return n
	}
	return a.sizes.Default
}

// reserve counts an index of n bytes before it loads, so that a memory
// limit set from the report already has room for it.
func (a *indexAccount) reserve(n uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.open += n
	a.reportLocked()
}

// release uncounts an index that closed (idle, or with the registry) or
// failed to open. It is not reported: a limit left too high only makes
// collection lazier until the next report, and an index reopened idle
// would otherwise be reported twice.
func (a *indexAccount) release(n uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.open -= n
}

// hold counts n bytes of encoder tables beside the indexes, reported at
// once, and returns their release, reported too: a cold pass's encoder
// goes with the pass, and the limit comes down with it (see coldEncoder).
func (a *indexAccount) hold(n uint64) (release func()) {
	a.reserve(n)
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.open -= n
		a.reportLocked()
	}
}

func (a *indexAccount) reportLocked() {
	if a.report != nil {
		a.report(a.open)
	}
}

// poolIndex is a pool's dedup index, opened by the first job that needs
// it and kept open until the registry closes. One sized by its pool's
// data is reopened larger when the data has outgrown it, between jobs.
type poolIndex struct {
	mu    sync.Mutex
	f     *dedupindex.File
	users int // jobs holding f: it is only replaced when none does
	// detached is when f let go of its file, between jobs, keeping the
	// index in memory (zero: attached).
	detached time.Time
	account  *indexAccount
}

// dedupIndex returns the pool's dedup index for a job, which gives it
// back with releaseIndex. The index is opened or created at its
// configured size, or else sized for the pool's data (see autoSize).
func (p *Pool) dedupIndex() (*dedupindex.File, error) {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	if p.index.f != nil && p.index.users > 0 {
		p.index.users++
		return p.index.f, nil
	}
	p.attachIndexLocked()
	size, err := p.indexSize()
	switch {
	case err != nil && p.index.f == nil:
		return nil, err
	case err != nil:
		p.log.Warn("cannot size dedup index; keeping it as it is", "pool", p.Name, "err", err)
	case p.index.f != nil && size != p.index.f.Size():
		p.log.Info("resizing dedup index to follow the pool's data", "pool", p.Name, "bytes", p.index.f.Size(), "new", size)
		if err := p.closeIndexLocked(); err != nil {
			p.log.Warn("cannot write dedup index back", "pool", p.Name, "err", err)
		}
	}
	if p.index.f == nil {
		if err := p.openIndexLocked(size); err != nil {
			return nil, err
		}
	}
	p.index.users++
	return p.index.f, nil
}

// releaseIndex gives back the index a job took. Its changed buckets are
// written back once the pool is idle (Pool.ReleaseIfIdle), or as the
// index closes.
func (p *Pool) releaseIndex() {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	p.index.users = max(p.index.users-1, 0)
}

func (p *Pool) openIndexLocked(size uint64) error {
	path := filepath.Join(p.stateDir.Name(), indexName)
	p.index.account.reserve(size)
	f, how, err := dedupindex.Open(p.stateDir, indexName, size)
	if err != nil {
		p.index.account.release(size)
		return fmt.Errorf("open dedup index of pool %s: %w", p.Name, err)
	}
	switch {
	case how.SetAside != "":
		p.log.Warn("dedup index corrupt; set aside and started afresh", "pool", p.Name, "aside", how.SetAside, "err", how.Corrupt)
	case how.Created:
		p.log.Info("created dedup index", "pool", p.Name, "path", path, "bytes", f.Size())
	case how.Resized:
		p.log.Info("resized dedup index", "pool", p.Name, "path", path, "bytes", f.Size())
	case how.Rewritten:
		p.log.Info("rewrote dedup index to be overwritten in place", "pool", p.Name, "path", path, "bytes", f.Size())
	}
	p.index.f = f
	return nil
}

// indexSize is the size the pool's index is to have: the configured one,
// or else autoSize of what it has now (that of the open index, or of the
// file) and of the pool's data.
func (p *Pool) indexSize() (uint64, error) {
	if n := p.index.account.sizeFor(p.Volumes.Dir()); n != 0 {
		return n, nil
	}
	data, err := p.dataBytes()
	if err != nil {
		return 0, err
	}
	current := dedupindex.StoredSize(p.stateDir, indexName)
	if p.index.f != nil {
		current = p.index.f.Size()
	}
	return autoSize(current, dedupindex.DefaultSize(data)), nil
}

// autoSize is the size of an index of current bytes (0: none) whose pool's
// data asks for want: it is kept while want is within a factor of two of
// it, so that an index is not rewritten for every bit of data added or
// removed, and grows to want once the data has doubled past it.
func autoSize(current, want uint64) uint64 {
	if want/2 < current && current < 2*want {
		return current
	}
	return want
}

// dataBytes is the space the pool's images take, by which its index is
// sized: every file of every volume but the precaches, which are
// reflinks of the clean images. Revisions count whole although they
// mostly share the images' extents: a generous index costs little.
func (p *Pool) dataBytes() (uint64, error) {
	var total uint64
	err := p.Volumes.EachFile(func(f volume.File, info fs.FileInfo) error {
		if f.Kind() != volume.PrecacheFile {
			total += uint64(info.Sys().(*syscall.Stat_t).Blocks) * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list the files of pool %s: %w", p.Name, err)
	}
	return total, nil
}

// flushIndex writes the index's changed buckets back, if it is open.
func (p *Pool) flushIndex() error {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	if p.index.f == nil {
		return nil
	}
	began := time.Now()
	n, err := p.index.f.Flush()
	if err != nil {
		return fmt.Errorf("flush dedup index of pool %s: %w", p.Name, err)
	}
	if n > 0 { // the pool's idle visits find nothing to write most times
		p.log.Debug("wrote the dedup index back", "pool", p.Name, "bytes", n, "ms", time.Since(began).Milliseconds())
	}
	return nil
}

// attachIndexLocked takes up a detached index again, unless its file
// changed since (then it is dropped, for the caller to open anew).
func (p *Pool) attachIndexLocked() {
	if p.index.f == nil || p.index.detached.IsZero() {
		return
	}
	p.index.detached = time.Time{}
	same, err := p.index.f.Attach(p.stateDir, indexName)
	if err == nil && same {
		return
	}
	if err != nil {
		p.log.Warn("cannot take the dedup index up again; reading it anew", "pool", p.Name, "err", err)
	}
	size := p.index.f.Size()
	p.index.f = nil
	p.index.account.release(size)
}

// releaseIdleIndex lets go of the index's file between jobs, so that the
// pool's filesystem can be unmounted, and keeps the index in memory for
// keepIdleIndex, so that the next job need not read it all again; then it
// closes the index.
func (p *Pool) releaseIdleIndex() error {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	switch {
	case p.index.f == nil:
		return nil
	case p.index.detached.IsZero():
		if err := p.index.f.Detach(); err != nil {
			return fmt.Errorf("detach dedup index of pool %s: %w", p.Name, err)
		}
		p.index.detached = time.Now()
		return nil
	case time.Since(p.index.detached) >= keepIdleIndex:
		return p.closeIndexLocked()
	}
	return nil
}

// closeIndex flushes and closes the index, if it is open.
func (p *Pool) closeIndex() error {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	return p.closeIndexLocked()
}

func (p *Pool) closeIndexLocked() error {
	if p.index.f == nil {
		return nil
	}
	size := p.index.f.Size()
	err := p.index.f.Close()
	p.index.f, p.index.detached = nil, time.Time{}
	p.index.account.release(size)
	if err != nil {
		return fmt.Errorf("close dedup index of pool %s: %w", p.Name, err)
	}
	return nil
}
