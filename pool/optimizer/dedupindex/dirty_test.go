// SPDX-License-Identifier: GPL-2.0-or-later

package dedupindex

import (
	"bytes"
	"errors"
	"testing"
)

// image is an io.WriterAt over a byte slice that counts what it is given
// and can be made to fail.
type image struct {
	b      []byte
	writes int
	bytes  int64
	fail   error
}

func (m *image) WriteAt(p []byte, off int64) (int, error) {
	if m.fail != nil {
		return 0, m.fail
	}
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	m.writes++
	m.bytes += int64(len(p))
	return copy(m.b[off:], p), nil
}

// hashIn returns the k-th hash that lands in bucket bi.
func hashIn(x *Index, bi uint64, k int) uint64 { return bi + uint64(k+1)*x.nbuckets }

func TestWriteDirty(t *testing.T) {
	const nbuckets = 600 // more than one run of chunkBuckets
	for _, tc := range []struct {
		name    string
		change  func(x *Index)
		buckets int // dirty buckets
		writes  int // header, then a bucket write and a checksum write per run
	}{
		{"nothing changed", func(*Index) {}, 0, 0},
		{"one bucket", func(x *Index) { x.Insert(hashIn(x, 7, 0), addr(0)) }, 1, 3},
		{"adjacent buckets make one run", func(x *Index) {
			x.Insert(hashIn(x, 63, 0), addr(0))
			x.Insert(hashIn(x, 64, 0), addr(1)) // across a bitmap word
			x.Insert(hashIn(x, 65, 0), addr(2))
		}, 3, 3},
		{"separate buckets", func(x *Index) {
			x.Insert(hashIn(x, 1, 0), addr(0))
			x.Insert(hashIn(x, 500, 0), addr(1))
		}, 2, 5},
		{"runs are split at chunkBuckets", func(x *Index) {
			for bi := range uint64(nbuckets) {
				x.Insert(hashIn(x, bi, 0), addr(int(bi)))
			}
		}, nbuckets, 7},
		{"lookup miss and front hit change nothing", func(x *Index) {
			x.Lookup(nil, hashIn(x, 1, 1))
			x.Lookup(nil, hashIn(x, 2, 1))
		}, 0, 0},
		{"erase, useful and reordering lookup", func(x *Index) {
			x.Erase(hashIn(x, 2, 0), addr(0))
			x.MarkUseful(hashIn(x, 4, 0), addr(0))
			x.Lookup(nil, hashIn(x, 6, 0))
		}, 3, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newIndex(t, nbuckets*bucketBytes)
			for _, bi := range []uint64{2, 4, 6} { // cells to erase, mark and raise
				x.Insert(hashIn(x, bi, 0), addr(0))
				x.Insert(hashIn(x, bi, 1), addr(1))
				x.Lookup(nil, hashIn(x, bi, 1))
			}
			img := &image{b: encode(t, x)}
			x.clean()
			tc.change(x)
			n, err := x.WriteDirty(img)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(tc.buckets) * (bucketBytes + 8)
			if tc.buckets > 0 {
				want += headerBytes
			}
			if n != want || img.bytes != want || img.writes != tc.writes {
				t.Errorf("wrote %d bytes (returned %d) in %d writes, want %d in %d",
					img.bytes, n, img.writes, want, tc.writes)
			}
			if !bytes.Equal(img.b, encode(t, x)) {
				t.Error("image differs from WriteTo's")
			}
			if n, _ := x.WriteDirty(img); n != 0 {
				t.Errorf("second WriteDirty wrote %d bytes", n)
			}
		})
	}
}

func TestWriteDirtyFailureKeepsBucketsDirty(t *testing.T) {
	x := newIndex(t, 300*bucketBytes)
	img := &image{b: encode(t, x)}
	for bi := range uint64(300) {
		x.Insert(hashIn(x, bi, 0), addr(0))
	}
	boom := errors.New("boom")
	img.fail = boom
	if _, err := x.WriteDirty(img); !errors.Is(err, boom) {
		t.Fatalf("WriteDirty = %v, want boom", err)
	}
	img.fail = nil
	if _, err := x.WriteDirty(img); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.b, encode(t, x)) {
		t.Error("image differs from WriteTo's after a failed then a good WriteDirty")
	}
}
