// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// One small function per ioctl. Each takes the *os.File rather than a raw
// descriptor and keeps it alive until the call returns, so a finalizer
// cannot close the descriptor while the kernel still uses it. Errors are
// returned bare (a unix.Errno); the exported API adds context.

// ioctlPtr issues an ioctl whose argument is a pointer to a kernel struct.
// The uintptr conversion sits in the Syscall argument list, as the unsafe
// rules require for the pointer to stay valid during the call.
func ioctlPtr(f *os.File, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(arg))
	runtime.KeepAlive(f)
	if errno != 0 {
		return errno
	}
	return nil
}

// iocClone is FICLONE: reflink all of src into dst.
func iocClone(dst, src *os.File) error {
	err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
	runtime.KeepAlive(dst)
	runtime.KeepAlive(src)
	return err
}

// iocDedupeRange is FIDEDUPERANGE. The destination files must be kept alive
// by the caller, since only their descriptors are in arg.
func iocDedupeRange(src *os.File, arg *unix.FileDedupeRange) error {
	err := unix.IoctlFileDedupeRange(int(src.Fd()), arg)
	runtime.KeepAlive(src)
	return err
}

// iocSync is BTRFS_IOC_SYNC: flush delalloc and commit the transaction.
func iocSync(f *os.File) error {
	_, err := unix.IoctlRetInt(int(f.Fd()), btrfsIocSync)
	runtime.KeepAlive(f)
	return err
}

// iocStartSync is BTRFS_IOC_START_SYNC: start committing the running
// transaction, and return its id (the last committed one when none runs).
func iocStartSync(f *os.File) (uint64, error) {
	var transid uint64
	err := ioctlPtr(f, btrfsIocStartSync, unsafe.Pointer(&transid))
	return transid, err
}

// iocWaitSync is BTRFS_IOC_WAIT_SYNC: wait until transaction transid is
// committed.
func iocWaitSync(f *os.File, transid uint64) error {
	return ioctlPtr(f, btrfsIocWaitSync, unsafe.Pointer(&transid))
}

// iocFsInfo is BTRFS_IOC_FS_INFO.
func iocFsInfo(f *os.File, args *btrfs_ioctl_fs_info_args) error {
	return ioctlPtr(f, btrfsIocFsInfo, unsafe.Pointer(args))
}

// iocDefragRange is BTRFS_IOC_DEFRAG_RANGE.
func iocDefragRange(f *os.File, args *btrfs_ioctl_defrag_range_args) error {
	return ioctlPtr(f, btrfsIocDefragRange, unsafe.Pointer(args))
}

// iocTreeSearchV2 is BTRFS_IOC_TREE_SEARCH_V2 on a buffer laid out as
// struct btrfs_ioctl_search_args_v2 followed by buf_size result bytes.
func iocTreeSearchV2(f *os.File, args *searchBuf) error {
	return ioctlPtr(f, btrfsIocTreeSearchV2, unsafe.Pointer(&args.words[0]))
}

// iocLogicalInoV2 is BTRFS_IOC_LOGICAL_INO_V2 with buf as the result
// container (struct btrfs_data_container). The kernel gets buf's address
// inside the argument struct, where the runtime cannot see it, so buf is
// pinned for the call.
func iocLogicalInoV2(f *os.File, logical, flags uint64, buf []uint64) error {
	var pin runtime.Pinner
	pin.Pin(&buf[0])
	defer pin.Unpin()
	args := btrfs_ioctl_logical_ino_args{
		logical: logical,
		size:    uint64(len(buf)) * 8,
		flags:   flags,
		inodes:  uint64(uintptr(unsafe.Pointer(&buf[0]))),
	}
	return ioctlPtr(f, btrfsIocLogicalInoV2, unsafe.Pointer(&args))
}

// iocEncodedWrite is BTRFS_IOC_ENCODED_WRITE of one buffer, encoded, at
// offset, standing for length bytes of file data. The kernel finds the
// iovec and the buffer through addresses the runtime cannot see, so both
// are pinned.
func iocEncodedWrite(f *os.File, offset, length uint64, encoded []byte, compression uint32) error {
	var pin runtime.Pinner
	defer pin.Unpin()
	iov := &unix.Iovec{Base: &encoded[0]}
	iov.SetLen(len(encoded))
	pin.Pin(iov)
	pin.Pin(&encoded[0])
	args := btrfs_ioctl_encoded_io_args{
		iov:           uintptr(unsafe.Pointer(iov)),
		iovcnt:        1,
		offset:        int64(offset),
		len:           length,
		unencoded_len: length,
		compression:   compression,
	}
	return ioctlPtr(f, btrfsIocEncodedWrite, unsafe.Pointer(&args))
}

// iocFiemap is FS_IOC_FIEMAP with room for no extents: it counts them.
func iocFiemap(f *os.File, args *fiemap) error {
	return ioctlPtr(f, fsIocFiemap, unsafe.Pointer(args))
}

// iocInoLookup is BTRFS_IOC_INO_LOOKUP.
func iocInoLookup(f *os.File, args *btrfs_ioctl_ino_lookup_args) error {
	return ioctlPtr(f, btrfsIocInoLookup, unsafe.Pointer(args))
}

// iocGetFlags is FS_IOC_GETFLAGS. The kernel writes an int although the
// request number is declared with a long.
func iocGetFlags(f *os.File) (uint32, error) {
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	runtime.KeepAlive(f)
	return flags, err
}

// iocSetFlags is FS_IOC_SETFLAGS; the kernel reads an int.
func iocSetFlags(f *os.File, flags uint32) error {
	err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(int32(flags)))
	runtime.KeepAlive(f)
	return err
}

// searchBuf is the argument of BTRFS_IOC_TREE_SEARCH_V2: the 112-byte
// header followed by the result area. It is backed by uint64 words so the
// header is 8-byte aligned.
type searchBuf struct {
	words []uint64
}

func newSearchBuf(resultSize int) *searchBuf {
	n := (int(unsafe.Sizeof(btrfs_ioctl_search_args_v2{})) + resultSize + 7) / 8
	return &searchBuf{words: make([]uint64, n)}
}

// args is the fixed header of the buffer.
func (b *searchBuf) args() *btrfs_ioctl_search_args_v2 {
	return (*btrfs_ioctl_search_args_v2)(unsafe.Pointer(&b.words[0]))
}

// results is the area after the header that the kernel fills with
// (search header, item) pairs.
func (b *searchBuf) results() []byte {
	all := unsafe.Slice((*byte)(unsafe.Pointer(&b.words[0])), len(b.words)*8)
	return all[unsafe.Sizeof(btrfs_ioctl_search_args_v2{}):]
}
