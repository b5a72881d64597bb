package pool

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/btrfs-vdo/btrfs-vdo/pool/dedupindex"
)

// indexName is the dedup index's file under the pool's StateDir.
const indexName = "dedup.idx"

// IndexSizes sizes the pools' dedup indexes, in bytes, each a positive
// multiple of 4 KiB.
type IndexSizes struct {
	// Default is every pool's size; 0 sizes each index for its pool's
	// filesystem (dedupindex.DefaultSize).
	Default uint64
	// Pools overrides Default for the pools at these directories.
	Pools map[string]uint64
}

// SetIndexSizes sizes the dedup indexes that open from now on; an index
// file of another size is converted as it opens.
func (r *Registry) SetIndexSizes(s IndexSizes) {
	r.indexes.mu.Lock()
	defer r.indexes.mu.Unlock()
	r.indexes.sizes = s
}

// OnIndexSized has report told the total bytes of the open dedup indexes
// each time one is about to open, counting it at the size it is to have:
// they are most of the daemon's memory. Calls come one at a time; report
// must not use the registry.
func (r *Registry) OnIndexSized(report func(total uint64)) {
	r.indexes.mu.Lock()
	defer r.indexes.mu.Unlock()
	r.indexes.report = report
}

// indexAccount is the registry's side of its pools' indexes: the sizes
// they are to have and the bytes the open ones hold.
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
	if a.report != nil {
		a.report(a.open)
	}
}

// release uncounts an index that closed or failed to open. It is not
// reported: indexes close only as the registry does, and a limit left too
// high after a failed open only makes collection lazier.
func (a *indexAccount) release(n uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.open -= n
}

// poolIndex is a pool's dedup index, opened by the first job that needs
// it and kept open until the registry closes.
type poolIndex struct {
	mu      sync.Mutex
	f       *dedupindex.File
	account *indexAccount
}

// dedupIndex returns the pool's dedup index, opening or creating it at
// its configured size, or else sized for the pool's filesystem.
func (p *Pool) dedupIndex() (*dedupindex.File, error) {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	if p.index.f != nil {
		return p.index.f, nil
	}
	size, err := p.indexSize()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(p.stateDir.Name(), indexName)
	p.index.account.reserve(size)
	f, how, err := dedupindex.Open(p.stateDir, indexName, size)
	if err != nil {
		p.index.account.release(size)
		return nil, fmt.Errorf("open dedup index of pool %s: %w", p.Name, err)
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
	return f, nil
}

// indexSize is the size the pool's index is to have.
func (p *Pool) indexSize() (uint64, error) {
	if n := p.index.account.sizeFor(p.Volumes.Dir()); n != 0 {
		return n, nil
	}
	size, _, err := p.Usage()
	if err != nil {
		return 0, err
	}
	return dedupindex.DefaultSize(uint64(size)), nil
}

// flushIndex writes the index's changed buckets back, if it is open.
func (p *Pool) flushIndex() error {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	if p.index.f == nil {
		return nil
	}
	if err := p.index.f.Flush(); err != nil {
		return fmt.Errorf("flush dedup index of pool %s: %w", p.Name, err)
	}
	return nil
}

// closeIndex flushes and closes the index, if it is open.
func (p *Pool) closeIndex() error {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	if p.index.f == nil {
		return nil
	}
	size := p.index.f.Size()
	err := p.index.f.Close()
	p.index.f = nil
	p.index.account.release(size)
	if err != nil {
		return fmt.Errorf("close dedup index of pool %s: %w", p.Name, err)
	}
	return nil
}
