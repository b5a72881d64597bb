// SPDX-License-Identifier: GPL-2.0-or-later

package btrfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// An extent written encoded reads back as the data it was made from, is
// stored zstd-compressed in as many sectors as its frame, and can be
// deduplicated into a file holding the same bytes uncompressed.
func TestWriteZstdExtent(t *testing.T) {
	dir := mountBtrfs(t)
	enc := btrfs.NewZstdEncoder(3, 1)
	tests := []struct {
		name   string
		length int
	}{
		{"a whole extent", btrfs.MaxCompressedExtent},
		{"a few sectors", 3 * 4096},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := textData(tt.length, i)
			frame := enc.Encode(nil, data)
			if !btrfs.Saves(frame, data) {
				t.Fatalf("text of %d bytes compressed to %d: does not save a sector", len(data), len(frame))
			}
			f, err := os.OpenFile(filepath.Join(dir, tt.name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Past the first sector, where the kernel would store it inline.
			const at = 4096
			if err := btrfs.WriteZstdExtent(f, at, frame, uint64(len(data))); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			if _, err := f.ReadAt(got, at); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("the extent reads back other bytes than were encoded")
			}
			var stored []btrfs.Extent
			for _, e := range extents(t, f, 0) {
				if !e.IsHole() {
					stored = append(stored, e)
				}
			}
			if len(stored) != 1 || stored[0].Compression != btrfs.CompressZstd || stored[0].Offset != at ||
				stored[0].Length != uint64(len(data)) || stored[0].DiskNumBytes != (uint64(len(frame))+4095)&^4095 {
				t.Fatalf("extents %+v, want one zstd extent of %d bytes at %d in %d disk bytes",
					stored, len(data), at, (len(frame)+4095)&^4095)
			}
			plain := create(t, filepath.Join(dir, tt.name+" plain"), data)
			done, err := btrfs.Dedupe(f, at, uint64(len(data)), []btrfs.DedupeDest{{File: plain}})
			if err != nil || done[0] != uint64(len(data)) {
				t.Fatalf("dedupe into the same bytes: %v bytes, %v", done, err)
			}
		})
	}
}

// Arguments the kernel would refuse are refused before the call.
func TestWriteZstdExtentRefusesBadArguments(t *testing.T) {
	dir := mountBtrfs(t)
	enc := btrfs.NewZstdEncoder(3, 1)
	data := textData(64<<10, 7)
	frame := enc.Encode(nil, data)
	f := create(t, filepath.Join(dir, "f"), nil)
	tests := []struct {
		name   string
		offset uint64
		frame  []byte
		length uint64
	}{
		{"unaligned offset", 100, frame, uint64(len(data))},
		{"longer than an extent", 0, frame, btrfs.MaxCompressedExtent + 4096},
		{"no data", 0, frame, 0},
		{"no frame", 0, nil, uint64(len(data))},
		{"frame saves no sector", 0, make([]byte, 4000), 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := btrfs.WriteZstdExtent(f, tt.offset, tt.frame, tt.length)
			if !errors.Is(err, unix.EINVAL) {
				t.Fatalf("got %v, want EINVAL", err)
			}
		})
	}
	if size, _ := f.Seek(0, 2); size != 0 {
		t.Fatalf("refused writes left %d bytes", size)
	}
}

// The kernel takes a frame on trust; the byte comparison of a dedupe is
// what keeps a wrong one out of a file that holds other bytes.
func TestWrongFrameIsNotDeduplicated(t *testing.T) {
	dir := mountBtrfs(t)
	enc := btrfs.NewZstdEncoder(3, 1)
	data, other := textData(64<<10, 1), textData(64<<10, 2)
	f := create(t, filepath.Join(dir, "copy"), nil)
	if err := btrfs.WriteZstdExtent(f, 4096, enc.Encode(nil, other), uint64(len(data))); err != nil {
		t.Fatal(err)
	}
	plain := create(t, filepath.Join(dir, "plain"), data)
	want := checksum(t, plain)
	done, err := btrfs.Dedupe(f, 4096, uint64(len(data)), []btrfs.DedupeDest{{File: plain}})
	if err != nil || done[0] != 0 {
		t.Fatalf("dedupe of other bytes: %v bytes, %v; want 0 and no error", done, err)
	}
	if checksum(t, plain) != want {
		t.Fatal("the destination changed")
	}
}

// ZstdEncoderBytes covers what an encoder at each level holds once it
// has encoded an extent, without counting it more than half again.
func TestZstdEncoderBytesCoversTheEncodersTables(t *testing.T) {
	data := make([]byte, btrfs.MaxCompressedExtent)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	for _, level := range []int{1, 3, 5, 6, 9, 10, 15} {
		t.Run(strconv.Itoa(level), func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			enc := btrfs.NewZstdEncoder(level, 1)
			enc.Encode(nil, data)
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(enc)
			held, want := after.HeapAlloc-before.HeapAlloc, btrfs.ZstdEncoderBytes(level)
			if held > want || want > held+held/2 {
				t.Errorf("an encoder at level %d holds %d bytes; ZstdEncoderBytes says %d", level, held, want)
			}
		})
	}
}
