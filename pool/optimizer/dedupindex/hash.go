// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// BlockSize is the size of a hashed block and the alignment of addresses.
const BlockSize = 4096

// HashBlock returns the hash of one block. Zero blocks are hashed like any
// other; callers turn them into holes before looking anything up.
func HashBlock(b []byte) uint64 {
	return xxhash.Sum64(b)
}

// HashBlocks hashes each BlockSize block of data into out[i]. len(data)
// must be a multiple of BlockSize and out must have room for every block;
// anything else is a caller bug and panics.
func HashBlocks(data []byte, out []uint64) {
	if len(data)%BlockSize != 0 || len(out) < len(data)/BlockSize {
		panic(fmt.Sprintf("dedupindex: HashBlocks of %d bytes into %d hashes", len(data), len(out)))
	}
	for i := range len(data) / BlockSize {
		out[i] = xxhash.Sum64(data[i*BlockSize : (i+1)*BlockSize])
	}
}
