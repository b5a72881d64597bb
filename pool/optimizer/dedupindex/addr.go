// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

// BlockShift places a compressed block's number in its address. Logical
// addresses below it cover 256 PiB of chunks; blocks of an extent beyond
// are not indexed.
const BlockShift = 58

// BlockAddr is the address of the block at offset eo into the data of the
// extent at bytenr, and false when the block cannot have one. An
// uncompressed block's address is its logical address; a block of a
// compressed extent, which has no logical address of its own, is its
// extent's address with the block's number in the bits from BlockShift
// up. Blocks at or above 1<<BlockShift have none, since their address
// would collide with a compressed block's.
func BlockAddr(bytenr uint64, compressed bool, eo uint64) (uint64, bool) {
	switch {
	case bytenr+eo >= 1<<BlockShift:
		return 0, false
	case compressed:
		return bytenr | (eo/BlockSize)<<BlockShift, true
	}
	return bytenr + eo, true
}

// SplitAddr returns the logical address an address starts from and the
// block's number in a compressed extent (0 for an uncompressed block).
func SplitAddr(addr uint64) (base, block uint64) {
	return addr & (1<<BlockShift - 1), addr >> BlockShift
}
