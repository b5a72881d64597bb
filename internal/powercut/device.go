// SPDX-License-Identifier: GPL-2.0-or-later

// Package powercut is a test block device with a volatile write cache that
// a simulated power cut drops. It exists to test crash consistency: what a
// filesystem above it holds after losing power at any flush.
//
// Writes land in the cache; a flush (the loop device turns a block-layer
// flush or FUA write into fsync of its backing file) makes them durable. A
// cut, at a chosen flush or on demand, keeps none or a seeded random subset
// of the writes not yet flushed, as a disk that reorders its cache may (the
// model of CrashMonkey). After the cut the device stays usable for the
// filesystem above, so that it can be unmounted cleanly, but nothing more
// reaches the durable store.
package powercut

import (
	"fmt"
	"math/rand"
	"os"
	"sync"
)

const blockSize = 4096

// write is one write request as the device received it.
type write struct {
	off  int64
	data []byte
}

// Status is what the device tells its driver.
type Status struct {
	Size    int64 `json:"size"`
	Flushes int   `json:"flushes"` // flushes received, counting the one cut at
	Dead    bool  `json:"dead"`    // the power was cut
	Pending int   `json:"pending"` // unflushed writes (at the cut, once dead)
	Kept    int   `json:"kept"`    // of those, how many the cut persisted
}

// Device is the write-back cache over a durable store file.
type Device struct {
	mu       sync.Mutex
	store    *os.File
	size     int64
	keepSeed int64
	cache    map[int64][]byte // block number -> what reads see above the store
	pending  []write          // unflushed writes, oldest first
	cutAt    int              // flush number that cuts the power; 0: none
	status   Status
}

// Open serves the store file, which holds what is durable. keepSeed
// chooses what a cut keeps of the unflushed writes: 0 keeps none, any
// other value seeds a random choice of a subset.
func Open(store *os.File, keepSeed int64) (*Device, error) {
	info, err := store.Stat()
	if err != nil {
		return nil, fmt.Errorf("powercut: stat %s: %w", store.Name(), err)
	}
	return &Device{
		store:    store,
		size:     info.Size(),
		keepSeed: keepSeed,
		cache:    map[int64][]byte{},
		status:   Status{Size: info.Size()},
	}, nil
}

// Size is the device size in bytes.
func (d *Device) Size() int64 { return d.size }

// Status reports the flush count and whether the power is cut.
func (d *Device) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.status
	if !s.Dead {
		s.Pending = len(d.pending)
	}
	return s
}

// ReadAt reads what the filesystem above last wrote, durable or not.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off >= d.size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), d.size-off)]
	for done := 0; done < len(p); {
		pos := off + int64(done)
		block, in := pos/blockSize, int(pos%blockSize)
		n := min(blockSize-in, len(p)-done)
		if err := d.readBlock(block, in, p[done:done+n]); err != nil {
			return done, err
		}
		done += n
	}
	return len(p), nil
}

func (d *Device) readBlock(block int64, in int, p []byte) error {
	if cached, ok := d.cache[block]; ok {
		copy(p, cached[in:])
		return nil
	}
	if _, err := d.store.ReadAt(p, block*blockSize+int64(in)); err != nil {
		return fmt.Errorf("powercut: read %s: %w", d.store.Name(), err)
	}
	return nil
}

// WriteAt caches a write; only a flush makes it durable.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("powercut: write of %d bytes at %d beyond the device end %d", len(p), off, d.size)
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		block, in := pos/blockSize, int(pos%blockSize)
		n := min(blockSize-in, len(p)-done)
		cached, ok := d.cache[block]
		if !ok {
			cached = make([]byte, blockSize)
			if n < blockSize {
				if err := d.readBlock(block, 0, cached); err != nil {
					return done, err
				}
			}
			d.cache[block] = cached
		}
		copy(cached[in:], p[done:done+n])
		done += n
	}
	if !d.status.Dead {
		d.pending = append(d.pending, write{off: off, data: append([]byte(nil), p...)})
	}
	return len(p), nil
}

// Flush makes every write received so far durable, unless this is the
// flush the power was cut at, or the power is already cut.
func (d *Device) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Dead {
		return nil
	}
	d.status.Flushes++
	if d.status.Flushes == d.cutAt {
		return d.cut()
	}
	if err := d.persist(d.pending); err != nil {
		return err
	}
	d.pending = nil
	clear(d.cache)
	return nil
}

// CutAt arms a power cut at the nth flush from now (n >= 1): that flush
// and everything after it never reaches the store.
func (d *Device) CutAt(n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n < 1 {
		return fmt.Errorf("powercut: cut at flush %d: must be 1 or later", n)
	}
	d.cutAt = d.status.Flushes + n
	return nil
}

// Cut cuts the power now. Cutting twice is harmless.
func (d *Device) Cut() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Dead {
		return nil
	}
	return d.cut()
}

// cut persists what the keep policy chooses of the unflushed writes, in
// their order, and stops all further persisting. The cache stays, so the
// filesystem above keeps reading what it wrote.
func (d *Device) cut() error {
	kept := d.pending[:0:0]
	if d.keepSeed != 0 {
		rng := rand.New(rand.NewSource(d.keepSeed))
		for _, w := range d.pending {
			if rng.Intn(2) == 1 {
				kept = append(kept, w)
			}
		}
	}
	d.status.Dead = true
	d.status.Pending, d.status.Kept = len(d.pending), len(kept)
	d.pending = nil
	return d.persist(kept)
}

func (d *Device) persist(writes []write) error {
	for _, w := range writes {
		if _, err := d.store.WriteAt(w.data, w.off); err != nil {
			return fmt.Errorf("powercut: write %s at %d: %w", d.store.Name(), w.off, err)
		}
	}
	return nil
}
