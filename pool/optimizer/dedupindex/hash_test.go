// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func randomBlocks(n int) []byte {
	data := make([]byte, n*BlockSize)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(data)
	return data
}

func TestHashBlocks(t *testing.T) {
	data := randomBlocks(5)
	copy(data[3*BlockSize:4*BlockSize], data[:BlockSize]) // a duplicate block
	out := make([]uint64, 6)
	HashBlocks(data, out)
	for i := range 5 {
		block := data[i*BlockSize : (i+1)*BlockSize]
		if out[i] != HashBlock(block) || out[i] != xxhash.Sum64(block) {
			t.Errorf("block %d: %#x, want xxhash64 %#x", i, out[i], xxhash.Sum64(block))
		}
	}
	if out[0] != out[3] || out[0] == out[1] {
		t.Error("equal blocks must hash equal, different ones differently")
	}
	if out[5] != 0 {
		t.Error("HashBlocks wrote past the last block")
	}
	if HashBlock(make([]byte, BlockSize)) == 0 {
		t.Error("zero block hashed to zero")
	}
}

func TestHashBlocksPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		data int
		out  int
	}{
		{"partial block", BlockSize + 1, 2},
		{"out too short", 2 * BlockSize, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			HashBlocks(make([]byte, tc.data), make([]uint64, tc.out))
		})
	}
}

func BenchmarkHashBlocks(b *testing.B) {
	data := randomBlocks(256) // 1 MiB, cached
	out := make([]uint64, 256)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		HashBlocks(data, out)
	}
}

// BenchmarkInsertLookup inserts a hash into an index of the default
// minimum size and looks up another, half of them stored.
func BenchmarkInsertLookup(b *testing.B) {
	x := newIndex(b, DefaultSize(0))
	r := rand.New(rand.NewPCG(1, 1))
	i := 0
	b.ResetTimer()
	for range b.N {
		h := r.Uint64()
		x.Insert(h, addr(i))
		if i%2 == 0 {
			x.Lookup(nil, h)
		} else {
			x.Lookup(nil, r.Uint64())
		}
		i++
	}
}
