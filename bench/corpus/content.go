// SPDX-License-Identifier: GPL-2.0-or-later

package corpus

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// Kinds of generated file content. Text kinds compress about as well as
// their real counterparts with zstd; random stands for encrypted or
// already-compressed data; binary mixes the two, like executables.
type kind int

const (
	prose kind = iota
	logs
	source
	random
	binary
)

// vocabularySize is large enough for Zipf-distributed words to compress
// like natural text rather than like a short repeated list.
const vocabularySize = 8192

// generator writes deterministic content of each kind from one rng.
type generator struct {
	rng   *rand.Rand
	words []string
	zipf  *rand.Zipf
}

func newGenerator(seed uint64, salt string) *generator {
	// The vocabulary depends on the seed only, so every file of a corpus
	// speaks the same language, as a real system's files do.
	vocab := rand.New(rand.NewPCG(seed, 0))
	words := make([]string, vocabularySize)
	for i := range words {
		words[i] = word(vocab)
	}
	return (&generator{words: words}).withStream(seed, salt)
}

// withStream returns a generator with g's vocabulary and a random stream
// of its own, fixed by seed and salt: the same content as newGenerator
// gives, without making the vocabulary again for each of many files.
func (g *generator) withStream(seed uint64, salt string) *generator {
	rng := rand.New(rand.NewPCG(seed, hashString(salt)))
	return &generator{rng: rng, words: g.words, zipf: rand.NewZipf(rng, 1.1, 1, vocabularySize-1)}
}

// word makes a pronounceable word of one to four syllables.
func word(rng *rand.Rand) string {
	const consonants, vowels = "bcdfghjklmnprstvwz", "aeiouy"
	var b strings.Builder
	for range 1 + rng.IntN(4) {
		b.WriteByte(consonants[rng.IntN(len(consonants))])
		b.WriteByte(vowels[rng.IntN(len(vowels))])
		if rng.IntN(3) == 0 {
			b.WriteByte(consonants[rng.IntN(len(consonants))])
		}
	}
	return b.String()
}

// write writes exactly n bytes of content of kind k to w.
func (g *generator) write(w io.Writer, k kind, n int64) error {
	// The buffered writer's error is sticky: once the limit is reached
	// every later write reports errFull, which ends the loop.
	bw := bufio.NewWriterSize(&limitWriter{w: w, n: n}, 256<<10)
	for {
		var err error
		switch k {
		case prose:
			err = g.paragraph(bw)
		case logs:
			err = g.logLine(bw)
		case source:
			err = g.function(bw)
		case random:
			err = g.randomBytes(bw, 64<<10)
		case binary:
			err = g.binaryChunk(bw)
		}
		if errors.Is(err, errFull) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (g *generator) pick() string { return g.words[g.zipf.Uint64()] }

func (g *generator) paragraph(w *bufio.Writer) error {
	for range 3 + g.rng.IntN(6) {
		n := 5 + g.rng.IntN(16)
		for i := range n {
			s := g.pick()
			if i == 0 {
				s = strings.ToUpper(s[:1]) + s[1:]
			}
			w.WriteString(s)
			if i < n-1 {
				w.WriteByte(' ')
			}
		}
		w.WriteString(". ")
	}
	_, err := w.WriteString("\n\n")
	return err
}

var logTemplates = []string{
	"%s systemd[1]: Started %s.service - %s %s.\n",
	"%s kernel: [%d.%06d] %s: %s %s state changed\n",
	"%s NetworkManager[%d]: <info> device (%s): %s %s\n",
	"%s qrexec-agent[%d]: executing %s %s for %s\n",
	"%s sshd[%d]: Accepted publickey for %s from %s port %d\n",
}

func (g *generator) logLine(w *bufio.Writer) error {
	ts := fmt.Sprintf("2026-%02d-%02dT%02d:%02d:%02d.%06d+00:00 %s",
		1+g.rng.IntN(12), 1+g.rng.IntN(28), g.rng.IntN(24), g.rng.IntN(60), g.rng.IntN(60),
		g.rng.IntN(1e6), g.pick())
	var line string
	switch i := g.rng.IntN(len(logTemplates)); i {
	case 0:
		line = fmt.Sprintf(logTemplates[i], ts, g.pick(), g.pick(), g.pick())
	case 1:
		line = fmt.Sprintf(logTemplates[i], ts, g.rng.IntN(1e5), g.rng.IntN(1e6), g.pick(), g.pick(), g.pick())
	case 2:
		line = fmt.Sprintf(logTemplates[i], ts, g.rng.IntN(1e5), g.pick(), g.pick(), g.pick())
	case 3:
		line = fmt.Sprintf(logTemplates[i], ts, g.rng.IntN(1e5), g.pick(), g.pick(), g.pick())
	default:
		line = fmt.Sprintf(logTemplates[i], ts, g.rng.IntN(1e5), g.pick(),
			fmt.Sprintf("10.%d.%d.%d", g.rng.IntN(256), g.rng.IntN(256), g.rng.IntN(256)), 1024+g.rng.IntN(60000))
	}
	_, err := w.WriteString(line)
	return err
}

func (g *generator) function(w *bufio.Writer) error {
	fmt.Fprintf(w, "// %s %s the %s of %s.\nfunc %s(%s *%s, %s int) (%s, error) {\n",
		g.pick(), g.pick(), g.pick(), g.pick(), g.pick(), g.pick(), g.pick(), g.pick(), g.pick())
	for range 2 + g.rng.IntN(10) {
		switch g.rng.IntN(4) {
		case 0:
			fmt.Fprintf(w, "\tif %s.%s == %d {\n\t\treturn nil, fmt.Errorf(\"%s %s: %%w\", err)\n\t}\n",
				g.pick(), g.pick(), g.rng.IntN(100), g.pick(), g.pick())
		case 1:
			fmt.Fprintf(w, "\t%s := %s.%s(%s, %d)\n", g.pick(), g.pick(), g.pick(), g.pick(), g.rng.IntN(4096))
		case 2:
			fmt.Fprintf(w, "\tfor _, %s := range %s.%s {\n\t\t%s += %s\n\t}\n", g.pick(), g.pick(), g.pick(), g.pick(), g.pick())
		default:
			fmt.Fprintf(w, "\t%s.%s = append(%s.%s, %s)\n", g.pick(), g.pick(), g.pick(), g.pick(), g.pick())
		}
	}
	_, err := w.WriteString("\treturn nil, nil\n}\n\n")
	return err
}

func (g *generator) randomBytes(w *bufio.Writer, n int) error {
	buf := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := g.rng.Uint64()
		for j := range 8 {
			buf[i+j] = byte(v >> (8 * j))
		}
	}
	_, err := w.Write(buf)
	return err
}

// binaryChunk writes 64 KiB shaped like a section of an executable: code
// and data of moderate entropy, string tables, and zero padding.
func (g *generator) binaryChunk(w *bufio.Writer) error {
	const chunk = 64 << 10
	buf := make([]byte, 0, chunk)
	for len(buf) < chunk {
		switch g.rng.IntN(4) {
		case 0: // "code": a small alphabet of opcodes with random operands
			for range 512 {
				buf = append(buf, []byte{0x48, 0x89, 0x8b, 0xe8, 0x0f, 0x85}[g.rng.IntN(6)], byte(g.rng.IntN(16)))
			}
		case 1: // string table
			for range 64 {
				buf = append(buf, g.pick()...)
				buf = append(buf, '_')
				buf = append(buf, g.pick()...)
				buf = append(buf, 0)
			}
		case 2: // constants and addresses
			for range 128 {
				v := g.rng.Uint64() & 0x0000_7fff_ffff_ffff
				for j := range 8 {
					buf = append(buf, byte(v>>(8*j)))
				}
			}
		default: // alignment padding
			buf = append(buf, make([]byte, 256+g.rng.IntN(1024))...)
		}
	}
	_, err := w.Write(buf[:chunk])
	return err
}

// errFull ends generation once the requested size is written.
var errFull = errors.New("requested size reached")

// limitWriter passes on at most n bytes, then reports errFull.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errFull
	}
	short := int64(len(p)) > l.n
	if short {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	if err == nil && short {
		err = errFull
	}
	return n, err
}

// hashString is FNV-1a, to turn names into rng streams.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := range len(s) {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// File sizes and names per kind: small documents and sources, larger logs
// and downloads.
var fileShapes = map[kind]struct {
	min, max int64
	ext      string
}{
	prose:  {4 << 10, 1 << 20, ".txt"},
	logs:   {64 << 10, 4 << 20, ".log"},
	source: {4 << 10, 256 << 10, ".go"},
	random: {256 << 10, 8 << 20, ".bin"},
	binary: {64 << 10, 4 << 20, ".so"},
}

// writeFiles fills dir with files of kind k, of log-uniform sizes, until
// they take total bytes (in whole blocks), and returns how many it made.
func writeFiles(g *generator, dir string, k kind, total int64) (int, error) {
	shape := fileShapes[k]
	n := 0
	for total >= blockSize {
		size := int64(float64(shape.min) * math.Pow(float64(shape.max)/float64(shape.min), g.rng.Float64()))
		size = min(size, total)
		name := filepath.Join(dir, fmt.Sprintf("%s-%d%s", g.pick(), n, shape.ext))
		if err := writeFile(g, name, k, size); err != nil {
			return 0, err
		}
		total -= (size + blockSize - 1) / blockSize * blockSize
		n++
	}
	return n, nil
}

// writeFile creates name (and its directory) with size bytes of kind k.
func writeFile(g *generator, name string, k kind, size int64) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(name), err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	err = g.write(f, k, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
