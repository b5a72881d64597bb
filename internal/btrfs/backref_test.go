// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
)

// topLevelRoot is the tree id of a filesystem's top-level subvolume.
const topLevelRoot = 5

// inode is f's inode number.
func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// cloneNew creates name as a reflink of src. Call btrfstest.Sync before counting
// references: the extent tree catches up at commit.
func cloneNew(t *testing.T, name string, src *os.File) *os.File {
	t.Helper()
	f := create(t, name, nil)
	if err := btrfs.Clone(f, src); err != nil {
		t.Fatal(err)
	}
	return f
}

// onlyExtent returns the single extent of f, failing if there are more.
func onlyExtent(t *testing.T, f *os.File) btrfs.Extent {
	t.Helper()
	ext := extents(t, f, 0)
	if len(ext) != 1 || ext[0].DiskBytenr == 0 {
		t.Fatalf("%s: extents %+v, want exactly one on disk", f.Name(), ext)
	}
	return ext[0]
}

// refFixture is a file with two reflinked copies, then 256 KiB in the
// middle of the original overwritten: the original extent is referenced
// by the copies once each and by the original twice (before and after
// the overwrite), the new extent by the original only.
type refFixture struct {
	orig, copy1, copy2 *os.File
	shared, patch      btrfs.Extent
}

func newRefFixture(t *testing.T, dir string) refFixture {
	t.Helper()
	var fx refFixture
	fx.orig = create(t, filepath.Join(dir, "orig"), randomData(mib, 40))
	fx.copy1 = cloneNew(t, filepath.Join(dir, "copy1"), fx.orig)
	fx.copy2 = cloneNew(t, filepath.Join(dir, "copy2"), fx.orig)
	writeAt(t, fx.orig, randomData(256*kib, 41), 256*kib)
	btrfstest.Sync(t, fx.orig.Name())
	fx.shared = onlyExtent(t, fx.copy1)
	for _, e := range extents(t, fx.orig, 0) {
		if e.DiskBytenr != fx.shared.DiskBytenr {
			fx.patch = e
		}
	}
	if fx.patch.Offset != 256*kib || fx.patch.Length != 256*kib {
		t.Fatalf("overwrite extent %+v, want [256 KiB, 512 KiB)", fx.patch)
	}
	return fx
}

func TestLogicalInodes(t *testing.T) {
	mnt := mountBtrfs(t)
	fx := newRefFixture(t, mnt)
	orig, copy1, copy2 := inode(t, fx.orig), inode(t, fx.copy1), inode(t, fx.copy2)
	sharedRefs := []btrfs.InodeRef{
		{Inode: orig, Offset: 0, Root: topLevelRoot},
		// The kernel reports where the item starts, not where the
		// extent's first byte would be.
		{Inode: orig, Offset: 512 * kib, Root: topLevelRoot},
		{Inode: copy1, Offset: 0, Root: topLevelRoot},
		{Inode: copy2, Offset: 0, Root: topLevelRoot},
	}
	slices.SortFunc(sharedRefs, func(a, b btrfs.InodeRef) int {
		return cmp.Or(cmp.Compare(a.Inode, b.Inode), cmp.Compare(a.Offset, b.Offset))
	})

	tests := []struct {
		name    string
		bytenr  uint64
		want    []btrfs.InodeRef
		wantErr error
	}{
		{name: "shared extent start", bytenr: fx.shared.DiskBytenr, want: sharedRefs},
		{name: "inside the overwritten range", bytenr: fx.shared.DiskBytenr + 300*kib, want: sharedRefs},
		{name: "shared extent last block", bytenr: fx.shared.DiskBytenr + mib - 4*kib, want: sharedRefs},
		{name: "overwrite extent", bytenr: fx.patch.DiskBytenr,
			want: []btrfs.InodeRef{{Inode: orig, Offset: 256 * kib, Root: topLevelRoot}}},
		{name: "no extent there", bytenr: 4 * kib, wantErr: unix.ENOENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := btrfs.LogicalInodes(fx.copy2, tt.bytenr)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), fx.copy2.Name()) {
					t.Fatalf("LogicalInodes = %v, want %v naming %s", err, tt.wantErr, fx.copy2.Name())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("LogicalInodes = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestExtentRefCount(t *testing.T) {
	mnt := mountBtrfs(t)
	fx := newRefFixture(t, mnt)

	tests := []struct {
		name    string
		setup   func(t *testing.T)
		bytenr  uint64
		want    uint64
		wantErr error
	}{
		// orig references it from two items, each copy from one.
		{name: "shared extent", bytenr: fx.shared.DiskBytenr, want: 4},
		{name: "overwrite extent", bytenr: fx.patch.DiskBytenr, want: 1},
		{name: "not an extent start", bytenr: fx.shared.DiskBytenr + 4*kib, wantErr: unix.ENOENT},
		{
			name: "after deleting a copy",
			setup: func(t *testing.T) {
				if err := os.Remove(fx.copy2.Name()); err != nil {
					t.Fatal(err)
				}
				fx.copy2.Close()
				btrfstest.Sync(t, fx.orig.Name())
			},
			bytenr: fx.shared.DiskBytenr, want: 3,
		},
		{
			name: "after overwriting the rest of the original",
			setup: func(t *testing.T) {
				writeAt(t, fx.orig, randomData(256*kib, 42), 0)
				writeAt(t, fx.orig, randomData(512*kib, 43), 512*kib)
				btrfstest.Sync(t, fx.orig.Name())
			},
			bytenr: fx.shared.DiskBytenr, want: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(t)
			}
			got, err := btrfs.ExtentRefCount(fx.copy1, tt.bytenr)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ExtentRefCount = %d, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ExtentRefCount = %d, want %d", got, tt.want)
			}
			refs, err := btrfs.LogicalInodes(fx.copy1, tt.bytenr)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(refs)) != got {
				t.Errorf("LogicalInodes lists %d references %+v, ExtentRefCount %d", len(refs), refs, got)
			}
		})
	}
}

// More references than the initial buffer holds make LogicalInodes grow
// it until every reference fits.
func TestLogicalInodesManyRefs(t *testing.T) {
	mnt := mountBtrfs(t)
	const copies = 400
	src := create(t, filepath.Join(mnt, "src"), randomData(8*kib, 44))
	want := []uint64{inode(t, src)}
	for i := range copies {
		f := cloneNew(t, filepath.Join(mnt, fmt.Sprintf("copy%03d", i)), src)
		want = append(want, inode(t, f))
		f.Close()
	}
	btrfstest.Sync(t, src.Name())
	e := onlyExtent(t, src)

	refs, err := btrfs.LogicalInodes(src, e.DiskBytenr)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, r := range refs {
		got = append(got, r.Inode)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("LogicalInodes found %d inodes, want %d: %v", len(got), len(want), got)
	}
	if n, err := btrfs.ExtentRefCount(src, e.DiskBytenr); err != nil || n != copies+1 {
		t.Errorf("ExtentRefCount = %d, %v; want %d", n, err, copies+1)
	}
}

// References from other subvolumes carry their tree id. A snapshot shares
// the subvolume's tree blocks, so it sees the extent without adding to
// its reference count, as ExtentRefCount documents.
func TestLogicalInodesAt(t *testing.T) {
	mnt := mountBtrfs(t)
	fx := newRefFixture(t, mnt)
	orig, copy1, copy2 := inode(t, fx.orig), inode(t, fx.copy1), inode(t, fx.copy2)
	packed := create(t, filepath.Join(mnt, "packed"), nil)
	if err := btrfs.SetCompressionProperty(packed, "zstd"); err != nil {
		t.Fatal(err)
	}
	writeAt(t, packed, textData(256*kib, 1), 0)
	// Expose a compressed extent from its second block on.
	tail := cloneRange(t, filepath.Join(mnt, "tail"), packed, 4*kib, 124*kib)
	btrfstest.Sync(t, packed.Name())
	comp := extents(t, packed, 0)[0]
	if comp.Compression == btrfs.CompressNone {
		t.Fatalf("extent %+v not compressed", comp)
	}

	tests := []struct {
		name string
		addr uint64
		want []btrfs.InodeRef
	}{
		{"only the copies map the overwritten range", fx.shared.DiskBytenr + 300*kib, []btrfs.InodeRef{
			{Inode: copy1, Offset: 300 * kib, Root: topLevelRoot}, {Inode: copy2, Offset: 300 * kib, Root: topLevelRoot}}},
		{"every file maps the rest", fx.shared.DiskBytenr + 600*kib, []btrfs.InodeRef{
			{Inode: orig, Offset: 600 * kib, Root: topLevelRoot}, {Inode: copy1, Offset: 600 * kib, Root: topLevelRoot},
			{Inode: copy2, Offset: 600 * kib, Root: topLevelRoot}}},
		{"compressed: every item, by its start", comp.DiskBytenr, []btrfs.InodeRef{
			{Inode: inode(t, packed), Offset: 0, Root: topLevelRoot}, {Inode: inode(t, tail), Offset: 0, Root: topLevelRoot}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := btrfs.LogicalInodesAt(fx.orig, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(tt.want, func(a, b btrfs.InodeRef) int {
				return cmp.Or(cmp.Compare(a.Inode, b.Inode), cmp.Compare(a.Offset, b.Offset))
			})
			if !slices.Equal(got, tt.want) {
				t.Errorf("LogicalInodesAt = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestExtentAt(t *testing.T) {
	mnt := mountBtrfs(t)
	fx := newRefFixture(t, mnt)
	got, err := btrfs.ExtentAt(fx.orig, 512*kib)
	if err != nil {
		t.Fatal(err)
	}
	if got.DiskBytenr != fx.shared.DiskBytenr || got.ExtentOffset != 512*kib || got.Length != 512*kib {
		t.Errorf("ExtentAt(512 KiB) = %+v, want the shared extent from 512 KiB on", got)
	}
	if _, err := btrfs.ExtentAt(fx.orig, 100*kib); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), fx.orig.Name()) {
		t.Errorf("ExtentAt(100 KiB) = %v, want fs.ErrNotExist naming the file", err)
	}
}

func TestSubvolumeID(t *testing.T) {
	btrfstest.RequireCommands(t, "btrfs")
	mnt := mountBtrfs(t)
	sub := filepath.Join(mnt, "sub")
	btrfsCmd(t, "subvolume", "create", sub)
	for _, tt := range []struct {
		path string
		want uint64
	}{{mnt, topLevelRoot}, {sub, rootID(t, sub)}} {
		f := create(t, filepath.Join(tt.path, "f"), nil)
		if got, err := btrfs.SubvolumeID(f); err != nil || got != tt.want {
			t.Errorf("SubvolumeID(%s) = %d, %v; want %d", f.Name(), got, err, tt.want)
		}
	}
}

func TestBackrefsAcrossSubvolumes(t *testing.T) {
	btrfstest.RequireCommands(t, "btrfs")
	mnt := mountBtrfs(t)
	sub := filepath.Join(mnt, "sub")
	btrfsCmd(t, "subvolume", "create", sub)
	src := create(t, filepath.Join(mnt, "src"), randomData(mib, 45))
	dst := cloneNew(t, filepath.Join(sub, "dst"), src)
	btrfstest.Sync(t, src.Name())
	e := onlyExtent(t, src)
	subRoot := rootID(t, sub)

	refs, err := btrfs.LogicalInodes(src, e.DiskBytenr)
	if err != nil {
		t.Fatal(err)
	}
	want := []btrfs.InodeRef{
		{Inode: inode(t, src), Root: topLevelRoot},
		{Inode: inode(t, dst), Root: subRoot},
	}
	if !slices.Equal(refs, want) {
		t.Errorf("LogicalInodes = %+v, want %+v", refs, want)
	}

	// Enough inline files that the subvolume's tree is more than one leaf:
	// a snapshot copies only the root node, and so shares dst's leaf.
	for i := range 300 {
		create(t, filepath.Join(sub, fmt.Sprintf("filler%03d", i)), textData(1500, i)).Close()
	}
	snap := filepath.Join(mnt, "snap")
	btrfsCmd(t, "subvolume", "snapshot", sub, snap)
	btrfstest.Sync(t, src.Name())
	refs, err = btrfs.LogicalInodes(src, e.DiskBytenr)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, btrfs.InodeRef{Inode: inode(t, dst), Root: rootID(t, snap)})
	if !slices.Equal(refs, want) {
		t.Errorf("after snapshot: LogicalInodes = %+v, want %+v", refs, want)
	}
	if n, err := btrfs.ExtentRefCount(src, e.DiskBytenr); err != nil || n != 2 {
		t.Errorf("after snapshot: ExtentRefCount = %d, %v; want 2 (the shared leaf counts once)", n, err)
	}
}

func TestInlineDataSize(t *testing.T) {
	plain := mountBtrfs(t)
	zstd := mountBtrfs(t, "compress=zstd")

	tests := []struct {
		name    string
		dir     string
		data    []byte
		want    func(n uint64) bool
		wantErr error
	}{
		{name: "uncompressed", dir: plain, data: randomData(100, 46),
			want: func(n uint64) bool { return n == 100 }},
		{name: "compressed", dir: zstd, data: textData(3000, 47),
			want: func(n uint64) bool { return n > 0 && n < 3000 }},
		{name: "regular extent", dir: plain, data: randomData(64*kib, 48), wantErr: unix.ENODATA},
		{name: "empty", dir: plain, wantErr: unix.ENODATA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := create(t, filepath.Join(tt.dir, tt.name), tt.data)
			got, err := btrfs.InlineDataSize(f)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("InlineDataSize = %d, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(got) {
				t.Errorf("InlineDataSize = %d for %d bytes (extents %+v)", got, len(tt.data), extents(t, f, 0))
			}
		})
	}
}

func TestFilesystemID(t *testing.T) {
	btrfstest.RequireCommands(t, "btrfs")
	mnt, other := mountBtrfs(t), mountBtrfs(t)
	sub := filepath.Join(mnt, "sub")
	btrfsCmd(t, "subvolume", "create", sub)
	id := func(dir string) [16]byte {
		t.Helper()
		f := create(t, filepath.Join(dir, "f"), nil)
		fsid, err := btrfs.FilesystemID(f)
		if err != nil {
			t.Fatal(err)
		}
		return fsid
	}
	top, inSub, elsewhere := id(mnt), id(sub), id(other)
	if top != inSub {
		t.Errorf("subvolume has id %x, top level %x; want the same", inSub, top)
	}
	if top == elsewhere {
		t.Errorf("two filesystems share id %x", top)
	}
}

// The new calls fail cleanly on another filesystem, naming the file.

// btrfsCmd runs the btrfs tool.
func btrfsCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("btrfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rootID is the tree id of the subvolume at path.
func rootID(t *testing.T, path string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(strings.TrimSpace(btrfsCmd(t, "inspect-internal", "rootid", path)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// cloneRange creates name holding a reflink of src's n bytes at off.
func cloneRange(t *testing.T, name string, src *os.File, off, n uint64) *os.File {
	t.Helper()
	f := create(t, name, nil)
	if err := unix.IoctlFileCloneRange(int(f.Fd()), &unix.FileCloneRange{
		Src_fd: int64(src.Fd()), Src_offset: off, Src_length: n,
	}); err != nil {
		t.Fatal(err)
	}
	return f
}
