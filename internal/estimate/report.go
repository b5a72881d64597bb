// SPDX-License-Identifier: GPL-2.0-or-later

package estimate

import "math"

// Figures are one VM's estimate, or the pool's, in bytes. The errors are
// half-widths of 95% confidence intervals from the sample (see the package
// doc for what they do not cover).
type Figures struct {
	VM   string `json:"vm,omitempty"`
	Kind string `json:"kind,omitempty"` // "template" or "appvm"
	// LogicalBytes is the data the files reference, each data extent's
	// referenced part counted once; DiskBytes the space it takes now.
	LogicalBytes uint64 `json:"logical_bytes"`
	DiskBytes    uint64 `json:"disk_bytes"`
	// CompressedBytes is the space after compression alone.
	CompressedBytes      uint64 `json:"compressed_bytes"`
	CompressedErrorBytes uint64 `json:"compressed_error_bytes"`
	// DedupedBytes is the space after a full optimization: zero blocks
	// made holes, duplicates shared, the rest compressed.
	DedupedBytes      uint64 `json:"deduped_bytes"`
	DedupedErrorBytes uint64 `json:"deduped_error_bytes"`
	SavingBytes       int64  `json:"saving_bytes"` // DiskBytes - DedupedBytes
	// ZeroBytes and DuplicateBytes are the logical bytes that become holes
	// and that are found elsewhere in the pool.
	ZeroBytes           uint64 `json:"zero_bytes"`
	DuplicateBytes      uint64 `json:"duplicate_bytes"`
	DuplicateErrorBytes uint64 `json:"duplicate_error_bytes"`
	// UnchangedDiskBytes is the disk space of extents left as they are.
	UnchangedDiskBytes uint64 `json:"unchanged_disk_bytes"`
	SampledBytes       uint64 `json:"sampled_bytes"`
}

// Report is Run's result.
type Report struct {
	Dir        string    `json:"dir"`
	ZstdLevel  int       `json:"zstd_level"`
	Seed       uint64    `json:"seed"`
	Confidence float64   `json:"confidence"`
	VMs        []Figures `json:"vms"`
	Total      Figures   `json:"total"`
	// BytesRead is the data read: the sample and the verified pairs.
	BytesRead   uint64 `json:"bytes_read"`
	UnitsRead   int    `json:"units_read"`
	UnitsTotal  int    `json:"units_total"`
	BlocksSwept uint64 `json:"checksums_read"`
	// ContentSampleRate is the share of distinct block contents whose
	// duplicates were counted.
	ContentSampleRate float64 `json:"content_sample_rate"`
	PairsVerified     int     `json:"pairs_verified"`
	PairsEqualShare   float64 `json:"pairs_equal_share"`
	// ChecksumMismatches counts sampled blocks whose stored checksum is
	// not that of the bytes read: data changing under the estimate.
	ChecksumMismatches int     `json:"checksum_mismatches"`
	Seconds            float64 `json:"seconds"`
}

// ratio is a ratio estimate y/x from sampled units with its standard
// error.
type ratio struct{ r, se float64 }

// ratioOf estimates Σy/Σx over a population from units sampled without
// replacement at fraction f: the classical ratio estimator, with the
// linearized variance (1-f)/(n x̄²) · Σ(y - r x)²/(n-1).
func ratioOf(ys, xs []float64, f float64) (ratio, bool) {
	var sy, sx float64
	for i := range ys {
		sy += ys[i]
		sx += xs[i]
	}
	n := float64(len(ys))
	if sx == 0 {
		return ratio{}, false
	}
	r := sy / sx
	if len(ys) < 2 { // no spread to measure: all of the data, or a guess
		return ratio{r: r, se: max(0, 1-f) * r}, f >= 1
	}
	var ss float64
	for i := range ys {
		d := ys[i] - r*xs[i]
		ss += d * d
	}
	mean := sx / n
	v := max(0, 1-f) * ss / (n - 1) / n / (mean * mean)
	return ratio{r: r, se: math.Sqrt(v)}, true
}

// report puts the figures together.
func (e *estimator) report(dir string) Report {
	r := Report{Dir: dir, ZstdLevel: e.opt.ZstdLevel, Seed: e.opt.Seed, Confidence: 0.95,
		UnitsRead: len(e.s.units), UnitsTotal: e.nUnits, BlocksSwept: e.swept, BytesRead: e.read,
		ContentSampleRate: e.d.rate, PairsVerified: e.verified, PairsEqualShare: e.share}
	f := 1.0
	if e.nUnits > 0 {
		f = float64(len(e.s.units)) / float64(e.nUnits)
	}
	pool, _, _ := e.ratios(-1, f)
	shareSE := 0.0
	if e.verified > 0 {
		shareSE = math.Sqrt(e.share * (1 - e.share) / float64(e.verified))
	}
	var totalVar [3]float64
	for vm, info := range e.l.vms {
		vf, fullR, keptR := e.ratios(vm, f)
		if !fullR {
			vf.full = pool.full
		}
		if !keptR {
			vf.kept = pool.kept
		}
		fig, vars := e.figures(vm, vf, shareSE)
		fig.VM, fig.Kind = info.name, info.kind
		r.VMs = append(r.VMs, fig)
		r.Total = addFigures(r.Total, fig)
		for i := range vars {
			totalVar[i] += vars[i]
		}
		r.ChecksumMismatches += vf.mismatched
	}
	r.Total.CompressedErrorBytes = interval(totalVar[0])
	r.Total.DedupedErrorBytes = interval(totalVar[1])
	r.Total.DuplicateErrorBytes = interval(totalVar[2])
	return r
}

// vmRatios are the compression ratios of one VM's sampled units, or of
// all of them.
type vmRatios struct {
	full, kept ratio
	sampled    uint64
	mismatched int
}

// ratios estimates the compression of vm's units (all units for vm -1):
// of whole units (compression alone), and of what a full optimization
// keeps of them. It reports which ratios had enough units.
func (e *estimator) ratios(vm int, f float64) (vmRatios, bool, bool) {
	var fy, fx, ky, kx []float64
	var out vmRatios
	for _, u := range e.results {
		if vm >= 0 && u.vm != vm {
			continue
		}
		fy, fx = append(fy, float64(u.full)), append(fx, float64(u.raw))
		ky, kx = append(ky, float64(u.kept)), append(kx, float64(u.keptRaw))
		out.sampled += u.raw
		out.mismatched += u.mismatched
	}
	var okFull, okKept bool
	out.full, okFull = ratioOf(fy, fx, f)
	out.kept, okKept = ratioOf(ky, kx, f)
	return out, okFull, okKept
}

// figures are vm's estimates with the variances of CompressedBytes,
// DedupedBytes and DuplicateBytes.
func (e *estimator) figures(vm int, vr vmRatios, shareSE float64) (Figures, [3]float64) {
	c, dc := e.counts[vm], e.d.counts[vm]
	xDedup, xCompress := e.liveByClass(vm)
	zero := float64(dc.zero * blockSize)
	dup := dc.dup * e.share * blockSize
	dupVar := sq(e.share*blockSize)*dc.dupVar + sq(dc.dup*blockSize*shareSE)
	keptRaw := max(0, float64(xDedup)-zero-dup) + float64(xCompress)
	compressed := float64(c.keptDisk) + float64(xDedup+xCompress)*vr.full.r
	deduped := float64(c.keptDisk) + keptRaw*vr.kept.r
	vars := [3]float64{
		sq(float64(xDedup+xCompress) * vr.full.se),
		sq(keptRaw*vr.kept.se) + sq(vr.kept.r)*dupVar,
		dupVar,
	}
	fig := Figures{
		LogicalBytes: c.logical, DiskBytes: c.disk,
		CompressedBytes: uint64(compressed), CompressedErrorBytes: interval(vars[0]),
		DedupedBytes: uint64(deduped), DedupedErrorBytes: interval(vars[1]),
		SavingBytes: int64(c.disk) - int64(deduped),
		ZeroBytes:   uint64(zero) + c.prealloc, DuplicateBytes: uint64(dup), DuplicateErrorBytes: interval(vars[2]),
		UnchangedDiskBytes: c.keptDisk, SampledBytes: vr.sampled,
	}
	return fig, vars
}

// liveByClass sums the live bytes of vm's extents a full optimization
// takes apart, and of those it only compresses.
func (e *estimator) liveByClass(vm int) (dedup, compress uint64) {
	for i := range e.exts {
		x := &e.exts[i]
		switch {
		case x.vm != vm:
		case x.class == classDedup:
			dedup += x.liveBytes
		case x.class == classCompress:
			compress += x.liveBytes
		}
	}
	return dedup, compress
}

func addFigures(a, b Figures) Figures {
	a.LogicalBytes += b.LogicalBytes
	a.DiskBytes += b.DiskBytes
	a.CompressedBytes += b.CompressedBytes
	a.DedupedBytes += b.DedupedBytes
	a.SavingBytes += b.SavingBytes
	a.ZeroBytes += b.ZeroBytes
	a.DuplicateBytes += b.DuplicateBytes
	a.UnchangedDiskBytes += b.UnchangedDiskBytes
	a.SampledBytes += b.SampledBytes
	return a
}

func sq(x float64) float64 { return x * x }

// interval is the half-width of the 95% interval of an estimate of
// variance v, assumed normal.
func interval(v float64) uint64 { return uint64(math.Ceil(z95 * math.Sqrt(v))) }
