// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"io/fs"
	"os"
	"syscall"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer/dedupindex"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Index addresses. A block of an uncompressed extent is indexed by its
// btrfs logical address: the extent's disk_bytenr plus the block's offset
// into it. A compressed extent has no per-block logical addresses; its
// blocks are indexed by the extent's disk_bytenr with the block's number
// within the extent's data (below 32: btrfs compresses at most 128 KiB
// per extent) in the address's top bits, so that the index's alignment
// rule holds. Either way the kernel can say which files hold the block,
// so the daemon keeps no map of the pool's extents.

// blockSource is a file range holding the block an address names.
type blockSource struct {
	file   volume.File
	offset uint64
}

// resolver turns index addresses into the pool's files and offsets that
// hold them, through the kernel's back references.
type resolver struct {
	dir  *os.File               // the pool's directory, for the ioctls
	root uint64                 // the subvolume holding the pool
	file map[uint64]volume.File // inode -> clean image, precache or revision
}

// newResolver lists the pool's files. Dirty images are left out: they
// change while their VM runs, and what they share with their clean image
// is found through it.
func (p *Pool) newResolver() (*resolver, error) {
	return p.resolverOf(func(k volume.FileKind) bool { return k != volume.DirtyFile })
}

// resolverOf lists the pool's files of the kinds keep takes.
func (p *Pool) resolverOf(keep func(volume.FileKind) bool) (*resolver, error) {
	dir, err := p.openDir()
	if err != nil {
		return nil, err
	}
	r := &resolver{dir: dir, file: map[uint64]volume.File{}}
	fail := func(err error) (*resolver, error) {
		dir.Close()
		return nil, err
	}
	if r.root, err = btrfs.SubvolumeID(dir); err != nil {
		return fail(err)
	}
	err = p.Volumes.EachFile(func(f volume.File, info fs.FileInfo) error {
		if keep(f.Kind()) {
			r.file[info.Sys().(*syscall.Stat_t).Ino] = f
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return r, nil
}

func (r *resolver) close() { r.dir.Close() }

// resolve returns the pool's file ranges that may hold the block at addr,
// opening files with open. The caller compares bytes before trusting one:
// an entry is stale once its extent is freed and the space reused.
func (r *resolver) resolve(addr uint64, open func(volume.File) (*os.File, error)) []blockSource {
	base, block := dedupindex.SplitAddr(addr)
	refs, err := btrfs.LogicalInodesAt(r.dir, base)
	if err != nil {
		return nil // no extent there any more, or not yet committed
	}
	var out []blockSource
	for _, ref := range refs {
		file, ok := r.file[ref.Inode]
		if !ok || ref.Root != r.root {
			continue
		}
		if block == 0 {
			// The block's own file offset for an uncompressed extent;
			// an item's start for a compressed one, which holds block 0
			// there unless the item skips it (the bytes then differ).
			out = append(out, blockSource{file: file, offset: ref.Offset})
			continue
		}
		f, err := open(file)
		if err != nil || f == nil {
			continue
		}
		it, err := btrfs.ExtentAt(f, ref.Offset)
		eo := block * blockSize
		if err != nil || it.DiskBytenr != base || it.Compression == btrfs.CompressNone ||
			eo < it.ExtentOffset || eo >= it.ExtentOffset+it.Length {
			continue
		}
		out = append(out, blockSource{file: file, offset: it.Offset + eo - it.ExtentOffset})
	}
	return out
}
