// SPDX-License-Identifier: GPL-2.0-or-later

package powercut

import (
	"context"
	"fmt"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// DiskName is the one file of the FUSE filesystem: the device.
const DiskName = "disk"

// diskFile serves the device as a file. Every open asks for direct I/O, so
// the kernel keeps no page cache of it and every read, write and fsync of
// the loop device above reaches the Device.
type diskFile struct {
	fs.Inode
	dev *Device
}

var (
	_ fs.NodeOpener    = (*diskFile)(nil)
	_ fs.NodeReader    = (*diskFile)(nil)
	_ fs.NodeWriter    = (*diskFile)(nil)
	_ fs.NodeFsyncer   = (*diskFile)(nil)
	_ fs.NodeFlusher   = (*diskFile)(nil)
	_ fs.NodeGetattrer = (*diskFile)(nil)
	_ fs.NodeSetattrer = (*diskFile)(nil)
)

func (f *diskFile) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *diskFile) Read(_ context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := f.dev.ReadAt(dest, off)
	if err != nil {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *diskFile) Write(_ context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := f.dev.WriteAt(data, off)
	if err != nil {
		return uint32(n), syscall.EIO
	}
	return uint32(n), 0
}

// Fsync is the flush: the loop device turns a flush request into it.
func (f *diskFile) Fsync(context.Context, fs.FileHandle, uint32) syscall.Errno {
	if err := f.dev.Flush(); err != nil {
		return syscall.EIO
	}
	return 0
}

// Flush is close(2), which promises nothing about durability.
func (f *diskFile) Flush(context.Context, fs.FileHandle) syscall.Errno { return 0 }

func (f *diskFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(f.dev.Size())
	out.Blocks = (out.Size + 511) / 512
	return 0
}

// Setattr accepts what open(O_TRUNC-free) and utimes ask, but never a
// change of size: a disk does not grow.
func (f *diskFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok && size != uint64(f.dev.Size()) {
		return syscall.EINVAL
	}
	return f.Getattr(ctx, fh, out)
}

// Mount serves dev as DiskName in a FUSE filesystem at dir, mounted with
// mount(2) directly (no fusermount; needs root). Unmount the returned
// server to stop.
func Mount(dir string, dev *Device) (*fuse.Server, error) {
	root := &fs.Inode{}
	server, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true,
			FsName:            "powercut",
			Name:              "powercut",
			MaxWrite:          1 << 20,
		},
		OnAdd: func(ctx context.Context) {
			disk := root.NewPersistentInode(ctx, &diskFile{dev: dev}, fs.StableAttr{Mode: syscall.S_IFREG})
			root.AddChild(DiskName, disk, false)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("powercut: mount FUSE at %s: %w", dir, err)
	}
	return server, nil
}
