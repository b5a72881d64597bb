// SPDX-License-Identifier: GPL-2.0-or-later

package powercut

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

const testSize = 64 * blockSize

func openDevice(t *testing.T, keepSeed int64) (*Device, *os.File) {
	t.Helper()
	store, err := os.Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Truncate(testSize); err != nil {
		t.Fatal(err)
	}
	dev, err := Open(store, keepSeed)
	if err != nil {
		t.Fatal(err)
	}
	return dev, store
}

// fill is n bytes of value b.
func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func readAt(t *testing.T, r interface {
	ReadAt([]byte, int64) (int, error)
}, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := r.ReadAt(p, off); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustWrite(t *testing.T, dev *Device, off int64, p []byte) {
	t.Helper()
	if _, err := dev.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

func mustFlush(t *testing.T, dev *Device) {
	t.Helper()
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
}

// After a cut the store holds exactly what was flushed, while the device
// still reads back everything written, also after the cut.
func TestCutDropsUnflushedWrites(t *testing.T) {
	tests := []struct {
		name  string
		cutAt int // 0: cut by Cut after the writes
	}{
		{"cut now", 0},
		{"cut at the second flush", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, store := openDevice(t, 0)
			if tt.cutAt != 0 {
				if err := dev.CutAt(tt.cutAt); err != nil {
					t.Fatal(err)
				}
			}
			mustWrite(t, dev, 0, fill('a', blockSize))
			mustWrite(t, dev, 100, fill('b', 10)) // within a block
			mustFlush(t, dev)
			mustWrite(t, dev, blockSize, fill('c', 2*blockSize))
			mustWrite(t, dev, 50, fill('d', 10))
			if tt.cutAt == 0 {
				if err := dev.Cut(); err != nil {
					t.Fatal(err)
				}
			} else {
				mustFlush(t, dev) // the second: the power goes
			}
			mustWrite(t, dev, 3*blockSize, fill('e', blockSize)) // after the cut
			mustFlush(t, dev)

			durable := fill('a', blockSize)
			copy(durable[100:], fill('b', 10))
			if got := readAt(t, store, 0, blockSize); !bytes.Equal(got, durable) {
				t.Errorf("flushed block lost or changed: %q", got[:120])
			}
			if got := readAt(t, store, blockSize, 3*blockSize); !bytes.Equal(got, make([]byte, 3*blockSize)) {
				t.Error("an unflushed write reached the store")
			}
			view := readAt(t, dev, 0, 4*blockSize)
			if view[50] != 'd' || view[100] != 'b' || view[blockSize] != 'c' || view[3*blockSize] != 'e' {
				t.Error("the device does not read back what was written")
			}
			s := dev.Status()
			if !s.Dead || s.Pending != 2 || s.Kept != 0 || s.Flushes != max(tt.cutAt, 1) {
				t.Errorf("status %+v", s)
			}
		})
	}
}

// With a keep seed, a cut persists some of the unflushed writes, each whole
// or not at all, and never one made after the cut.
func TestCutKeepsASubsetOfUnflushedWrites(t *testing.T) {
	keptSome, droppedSome := false, false
	for seed := int64(1); seed <= 20; seed++ {
		dev, store := openDevice(t, seed)
		mustWrite(t, dev, 0, fill('f', blockSize))
		mustFlush(t, dev)
		for i := int64(1); i <= 8; i++ {
			mustWrite(t, dev, i*blockSize, fill(byte('0'+i), blockSize))
		}
		if err := dev.Cut(); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, dev, 9*blockSize, fill('x', blockSize))

		if got := readAt(t, store, 0, blockSize); !bytes.Equal(got, fill('f', blockSize)) {
			t.Fatalf("seed %d: flushed write lost", seed)
		}
		kept := 0
		for i := int64(1); i <= 8; i++ {
			got := readAt(t, store, i*blockSize, blockSize)
			switch {
			case bytes.Equal(got, fill(byte('0'+i), blockSize)):
				kept++
			case !bytes.Equal(got, make([]byte, blockSize)):
				t.Fatalf("seed %d: block %d holds neither the old nor the written data", seed, i)
			}
		}
		if got := readAt(t, store, 9*blockSize, blockSize); !bytes.Equal(got, make([]byte, blockSize)) {
			t.Fatalf("seed %d: a write after the cut reached the store", seed)
		}
		if s := dev.Status(); s.Kept != kept || s.Pending != 8 {
			t.Fatalf("seed %d: status %+v, but %d kept", seed, s, kept)
		}
		keptSome = keptSome || kept > 0
		droppedSome = droppedSome || kept < 8
	}
	if !keptSome || !droppedSome {
		t.Errorf("20 seeds kept some %v, dropped some %v: the subset is not random", keptSome, droppedSome)
	}
}

func TestRejectsWritesBeyondTheEnd(t *testing.T) {
	dev, _ := openDevice(t, 0)
	if _, err := dev.WriteAt(fill('z', 2), testSize-1); err == nil {
		t.Error("a write past the end was accepted")
	}
	if err := dev.CutAt(0); err == nil {
		t.Error("cut at flush 0 was accepted")
	}
}
