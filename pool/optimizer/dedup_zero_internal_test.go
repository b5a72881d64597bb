// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import "testing"

// isZero decides which blocks are punched instead of stored: one nonzero
// byte anywhere, including at a block boundary or in a partial last
// block, keeps the data.
func TestIsZero(t *testing.T) {
	with := func(n, at int) []byte {
		b := make([]byte, n)
		if at >= 0 {
			b[at] = 1
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"nil", nil, true},
		{"empty", []byte{}, true},
		{"one zero byte", with(1, -1), true},
		{"one nonzero byte", with(1, 0), false},
		{"a block of zeros", with(blockSize, -1), true},
		{"nonzero first byte", with(blockSize, 0), false},
		{"nonzero last byte of a block", with(blockSize, blockSize-1), false},
		{"a block and a byte of zeros", with(blockSize+1, -1), true},
		{"nonzero first byte of the second block", with(2*blockSize, blockSize), false},
		{"nonzero byte of a partial last block", with(2*blockSize+7, 2*blockSize+6), false},
		{"nonzero last byte of a large buffer", with(1<<20, 1<<20-1), false},
		{"a large buffer of zeros", with(1<<20+100, -1), true},
		{"0xff", []byte{0, 0, 0xff}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isZero(tt.b); got != tt.want {
				t.Errorf("isZero of %d bytes = %v, want %v", len(tt.b), got, tt.want)
			}
		})
	}
}
