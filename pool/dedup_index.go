package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/btrfs-vdo/btrfs-vdo/pool/dedupindex"
)

// indexName is the dedup index's file under the pool's StateDir.
const indexName = "dedup.idx"

// poolIndex is a pool's dedup index, opened by the first job that needs
// it and kept open until the registry closes.
type poolIndex struct {
	mu sync.Mutex
	f  *dedupindex.File
}

// dedupIndex returns the pool's dedup index, opening or creating it, sized
// for the pool's filesystem.
func (p *Pool) dedupIndex() (*dedupindex.File, error) {
	p.index.mu.Lock()
	defer p.index.mu.Unlock()
	if p.index.f != nil {
		return p.index.f, nil
	}
	size, _, err := p.Usage()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(p.Volumes.Dir(), StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, indexName)
	f, how, err := dedupindex.Open(path, dedupindex.DefaultSize(uint64(size)))
	if err != nil {
		return nil, fmt.Errorf("open dedup index of pool %s: %w", p.Name, err)
	}
	switch {
	case how.SetAside != "":
		p.log.Warn("dedup index corrupt; set aside and started afresh", "pool", p.Name, "aside", how.SetAside, "err", how.Corrupt)
	case how.Created:
		p.log.Info("created dedup index", "pool", p.Name, "path", path, "bytes", f.Size())
	case how.Resized:
		p.log.Info("resized dedup index", "pool", p.Name, "path", path, "bytes", f.Size())
	}
	p.index.f = f
	return f, nil
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
	err := p.index.f.Close()
	p.index.f = nil
	if err != nil {
		return fmt.Errorf("close dedup index of pool %s: %w", p.Name, err)
	}
	return nil
}
