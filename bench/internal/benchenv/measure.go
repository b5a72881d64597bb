// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
)

// Usage is one side's space figures at one point.
type Usage struct {
	Used int64 // statvfs: data and metadata of the whole filesystem
	// compsize over the pool directory: Disk is what the pool's data takes
	// on disk (each extent once), Uncompressed the same extents before
	// compression, Referenced what the files address.
	Disk, Uncompressed, Referenced int64
	// Shared is how many bytes of each image are stored in the same
	// extents as its newest revision, summed over the pool's volumes.
	Shared int64
	// Alone is how many bytes of the revisions' data are stored apart
	// from their images' at the same offsets, what a revision pins for
	// itself; AloneBy has it per vid. Its growth is sharing lost: a range
	// punched from both files alike, or rewritten into both, is no loss.
	Alone   int64
	AloneBy map[string]int64
}

// SharingLost is how many bytes of the revisions' data were stored with
// their images at u and are not at later.
func (u Usage) SharingLost(later Usage) int64 { return max(0, later.Alone-u.Alone) }

// pair is a volume's image and the revision it should share unchanged
// data with.
type pair struct{ vid, image, revision string }

// measure syncs the filesystem and takes its figures, compsize's over the
// directories dirs.
func measure(ctx context.Context, mnt string, dirs []string, pairs []pair) (Usage, error) {
	var u Usage
	if err := SyncFS(mnt); err != nil {
		return u, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return u, fmt.Errorf("statfs %s: %w", mnt, err)
	}
	u.Used = int64(st.Blocks-st.Bfree) * st.Bsize
	var err error
	if u.Disk, u.Uncompressed, u.Referenced, err = compsize(ctx, dirs); err != nil {
		return u, err
	}
	u.AloneBy = make(map[string]int64)
	for _, p := range pairs {
		n, err := sharedBytes(p.image, p.revision)
		if err != nil {
			return u, err
		}
		u.Shared += n
		_, alone, err := NewData(p.revision, p.image)
		if err != nil {
			return u, err
		}
		u.Alone += alone
		u.AloneBy[p.vid] = alone
	}
	return u, nil
}

// SyncFS writes back dirty data and commits the transaction, so extents
// and usage are final.
func SyncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	return btrfs.Sync(f)
}

// compsize returns compsize's totals for the files under dirs, each
// extent counted once.
func compsize(ctx context.Context, dirs []string) (disk, uncompressed, referenced int64, err error) {
	out, err := output(ctx, "compsize", append([]string{"--bytes"}, dirs...)...)
	if err != nil {
		return 0, 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// TOTAL  <perc>  <disk usage>  <uncompressed>  <referenced>
		f := strings.Fields(sc.Text())
		if len(f) != 5 || f[0] != "TOTAL" {
			continue
		}
		var v [3]int64
		for i := range v {
			if v[i], err = strconv.ParseInt(f[2+i], 10, 64); err != nil {
				return 0, 0, 0, fmt.Errorf("compsize %v: parse %q: %w", dirs, sc.Text(), err)
			}
		}
		return v[0], v[1], v[2], nil
	}
	return 0, 0, 0, fmt.Errorf("compsize %v: no TOTAL line in %q", dirs, out)
}

// extents lists the data extents of the file at path written at or after
// generation gen (0: all), leaving out holes and inline data.
func extents(path string, gen uint64) ([]btrfs.Extent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("list extents: %w", err)
	}
	defer f.Close()
	all, err := btrfs.Extents(f, gen)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, e := range all {
		if e.DiskBytenr != 0 && e.Type != btrfs.ExtentInline {
			out = append(out, e)
		}
	}
	return out, nil
}

// sharedBytes is how many bytes of image are stored in the same place as
// bytes of revision: the same data extent, the same range inside it.
func sharedBytes(image, revision string) (int64, error) {
	var n int64
	err := splitShared(image, revision, func(s Span, shared bool) {
		if shared {
			n += s.len()
		}
	})
	return n, err
}

// NewData returns the ranges of image's data that revision does not hold
// in the same place, and their total size: what was written to image
// since it was a reflink of revision.
func NewData(image, revision string) ([]Span, int64, error) {
	var spans []Span
	var n int64
	err := splitShared(image, revision, func(s Span, shared bool) {
		if !shared {
			spans = append(spans, s)
			n += s.len()
		}
	})
	return spans, n, err
}

// splitShared calls fn for each piece of image's data, in file offsets
// and in file order, saying whether revision references the same bytes of
// the same data extent.
func splitShared(image, revision string, fn func(s Span, shared bool)) error {
	img, err := extents(image, 0)
	if err != nil {
		return err
	}
	rev, err := extents(revision, 0)
	if err != nil {
		return err
	}
	// Ranges inside each data extent (uncompressed offsets) that the
	// revision references.
	inRev := make(map[uint64][]Span)
	for _, e := range rev {
		inRev[e.DiskBytenr] = append(inRev[e.DiskBytenr], Span{e.ExtentOffset, e.ExtentOffset + e.Length})
	}
	for _, e := range img {
		own := Span{e.ExtentOffset, e.ExtentOffset + e.Length}
		toFile := func(x uint64) uint64 { return e.Offset + x - e.ExtentOffset }
		at := own.off
		for _, c := range covered(own, inRev[e.DiskBytenr]) {
			if c.off > at {
				fn(Span{toFile(at), toFile(c.off)}, false)
			}
			fn(Span{toFile(c.off), toFile(c.end)}, true)
			at = c.end
		}
		if at < own.end {
			fn(Span{toFile(at), toFile(own.end)}, false)
		}
	}
	return nil
}

// covered returns the parts of own that spans cover, sorted and merged.
func covered(own Span, spans []Span) []Span {
	var out []Span
	for _, s := range spans {
		if lo, hi := max(own.off, s.off), min(own.end, s.end); lo < hi {
			out = append(out, Span{lo, hi})
		}
	}
	slices.SortFunc(out, func(a, b Span) int { return cmp.Compare(a.off, b.off) })
	merged := out[:0]
	for _, s := range out {
		if n := len(merged); n > 0 && s.off <= merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, s.end)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// Span is a byte range [off, end).
type Span struct{ off, end uint64 }

func (a Span) len() int64 { return int64(a.end - a.off) }

func (a Span) overlap(b Span) int64 {
	lo, hi := max(a.off, b.off), min(a.end, b.end)
	if hi <= lo {
		return 0
	}
	return int64(hi - lo)
}

// StoredBytes is what the ranges spans of the file at path take on disk
// now: their share of each data extent they lie in, compressed extents
// counted at their compressed size in proportion.
func StoredBytes(path string, spans []Span) (int64, error) {
	ext, err := extents(path, 0)
	if err != nil {
		return 0, err
	}
	var n float64
	for _, e := range ext {
		own := Span{e.Offset, e.Offset + e.Length}
		var covered int64
		for _, s := range spans {
			covered += own.overlap(s)
		}
		if covered == 0 {
			continue
		}
		if e.Compression == btrfs.CompressNone {
			n += float64(covered)
		} else {
			n += float64(covered) * float64(e.DiskNumBytes) / float64(e.RAMBytes)
		}
	}
	return int64(n), nil
}
