// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/cespare/xxhash/v2"
)

// filled returns an index of nbuckets with some cells stored, some of
// them useful, some erased, and some buckets full.
func filled(t testing.TB, nbuckets int) *Index {
	t.Helper()
	x := newIndex(t, uint64(nbuckets)*bucketBytes)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 100 * nbuckets {
		h := r.Uint64()
		if i%7 == 0 {
			h = 3 // overflow one bucket with one hash
		}
		x.Insert(h, addr(i))
		switch i % 10 {
		case 0:
			x.MarkUseful(h, addr(i))
		case 1:
			x.Erase(h, addr(i))
		}
	}
	return x
}

func encode(t testing.TB, x *Index) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := x.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n != encodedLen(x.Size()) {
		t.Fatalf("WriteTo returned %d, wrote %d, want %d", n, buf.Len(), encodedLen(x.Size()))
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, nbuckets := range []int{1, 3, 300} {
		x := filled(t, nbuckets)
		y, err := ReadFrom(bytes.NewReader(encode(t, x)), math.MaxUint64)
		if err != nil {
			t.Fatalf("%d buckets: %v", nbuckets, err)
		}
		if !bytes.Equal(x.table, y.table) {
			t.Fatalf("%d buckets: table differs after a round trip", nbuckets)
		}
		_, xused, _, _, _, _ := x.Stats()
		cells, yused, hits, misses, inserts, evictions := y.Stats()
		if cells != uint64(nbuckets)*cellsPerBucket || yused != xused || hits+misses+inserts+evictions != 0 {
			t.Fatalf("%d buckets: Stats after ReadFrom = %d %d %d %d %d %d, used before %d",
				nbuckets, cells, yused, hits, misses, inserts, evictions, xused)
		}
		checkAll(t, y)
	}
}

// reseal recomputes the checksums of a doctored image so that only the
// content checks can find what is wrong with it.
func reseal(img []byte) []byte {
	binary.LittleEndian.PutUint64(img[32:], xxhash.Sum64(img[:32]))
	size := binary.LittleEndian.Uint64(img[16:])
	for bi := range size / bucketBytes {
		b := img[headerBytes+bi*bucketBytes:][:bucketBytes]
		binary.LittleEndian.PutUint64(img[headerBytes+size+bi*8:], xxhash.Sum64(b))
	}
	return img
}

func TestCorruptionDetected(t *testing.T) {
	const nbuckets = 4
	good := encode(t, filled(t, nbuckets))
	size := uint64(nbuckets * bucketBytes)
	hashAt := func(bi, i int) int { return headerBytes + bi*bucketBytes + i*8 }
	wordAt := func(bi, i int) int { return hashAt(bi, i) + wordsAt }
	for _, tc := range []struct {
		name string
		bad  func(img []byte) []byte
	}{
		{"byte flipped in a bucket", func(img []byte) []byte { img[headerBytes+2*bucketBytes+100] ^= 1; return img }},
		{"byte flipped in a checksum", func(img []byte) []byte { img[headerBytes+size+9] ^= 1; return img }},
		{"byte flipped in the header", func(img []byte) []byte { img[20] ^= 1; return img }},
		{"empty", func([]byte) []byte { return nil }},
		{"truncated header", func(img []byte) []byte { return img[:100] }},
		{"truncated buckets", func(img []byte) []byte { return img[:headerBytes+bucketBytes+5] }},
		{"truncated checksums", func(img []byte) []byte { return img[:len(img)-1] }},
		{"wrong magic", func(img []byte) []byte { copy(img, "not-dix!"); return reseal(img) }},
		{"wrong version", func(img []byte) []byte { img[8] = version + 1; return reseal(img) }},
		{"wrong bucket size", func(img []byte) []byte { img[13] = 0x20; return reseal(img) }},
		{"size and bucket count disagree", func(img []byte) []byte { img[24]++; return reseal(img) }},
		{"cell in the wrong bucket", func(img []byte) []byte {
			copy(img[hashAt(1, 0):hashAt(1, 1)], img[hashAt(0, 0):hashAt(0, 1)])
			return reseal(img)
		}},
		{"unknown flag", func(img []byte) []byte { img[wordAt(0, 0)] |= 0x10; return reseal(img) }},
		{"gap between cells", func(img []byte) []byte {
			clear(img[hashAt(0, 0):hashAt(0, 1)])
			clear(img[wordAt(0, 0):wordAt(0, 1)])
			return reseal(img)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadFrom(bytes.NewReader(tc.bad(slices.Clone(good))), math.MaxUint64)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ReadFrom = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestReadErrorIsNotCorruption(t *testing.T) {
	boom := errors.New("boom")
	_, err := ReadFrom(iotest.ErrReader(boom), math.MaxUint64)
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadFrom = %v, want boom and not ErrCorrupt", err)
	}
}
