// SPDX-License-Identifier: GPL-2.0-or-later

// Package mantest reads the roff man pages under docs/man, for the tests
// that keep each page in step with the code it documents: a command, flag
// or configuration key that a page leaves out fails a test.
package mantest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Page is one man page's source, split into lines.
type Page struct {
	Name  string
	lines []string
}

// Load reads docs/man/name from the module's root, found by walking up
// from the test's directory to go.mod.
func Load(t testing.TB, name string) *Page {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	data, err := os.ReadFile(filepath.Join(dir, "docs", "man", name))
	if err != nil {
		t.Fatal(err)
	}
	return &Page{Name: name, lines: strings.Split(string(data), "\n")}
}

// Section returns the source lines of the section titled title (as in
// ".SH title" or `.SH "title"`), up to the next .SH; nil if there is none.
func (p *Page) Section(title string) []string {
	return between(p.lines, ".SH", title)
}

// Subsection returns the source lines of the subsection of lines whose
// heading (".SS") begins with the word name, up to the next .SS or .SH.
func Subsection(lines []string, name string) []string {
	return between(lines, ".SS", name)
}

// Headings returns the first word of each .SS heading in lines.
func Headings(lines []string) []string {
	var out []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, ".SS "); ok {
			if words := strings.Fields(Plain(strings.Join(splitArgs(rest), " "))); len(words) > 0 {
				out = append(out, words[0])
			}
		}
	}
	return out
}

func between(lines []string, macro, title string) []string {
	var out []string
	in := false
	for _, l := range lines {
		if strings.HasPrefix(l, ".SH ") || strings.HasPrefix(l, macro+" ") {
			if in {
				break
			}
			words := strings.Fields(Plain(strings.Join(splitArgs(strings.TrimPrefix(l, macro+" ")), " ")))
			in = strings.HasPrefix(l, macro+" ") && len(words) > 0 &&
				(words[0] == title || strings.Join(words, " ") == title)
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	return out
}

// Tags returns, as plain text, the tag of each .TP item in lines: the
// line after .TP.
func Tags(lines []string) []string {
	var out []string
	for i, l := range lines {
		if l == ".TP" && i+1 < len(lines) {
			out = append(out, Plain(lines[i+1]))
		}
	}
	return out
}

// HasTag reports whether an item in lines is tagged with word, alone or
// followed by more words ("--level n" has the tag word "--level").
func HasTag(lines []string, word string) bool {
	for _, tag := range Tags(lines) {
		if f := strings.Fields(tag); len(f) > 0 && strings.TrimSuffix(f[0], ",") == word {
			return true
		}
	}
	return false
}

// alternating are the font macros whose arguments alternate fonts and
// are printed without spaces between them.
var alternating = map[string]bool{".BI": true, ".BR": true, ".IB": true, ".IR": true, ".RB": true, ".RI": true}

// Plain renders one source line as text: font macros and escapes go,
// \- becomes -, \(dq becomes ".
func Plain(line string) string {
	if strings.HasPrefix(line, ".") {
		macro, args, _ := strings.Cut(line, " ")
		sep := " "
		if alternating[macro] {
			sep = ""
		}
		line = strings.Join(splitArgs(args), sep)
	}
	return strings.NewReplacer(`\fB`, "", `\fI`, "", `\fR`, "", `\fP`, "", `\-`, "-",
		`\(dq`, `"`, `\(em`, "—", `\(bu`, "•", `\e`, `\`, `\&`, "", `\|`, "").Replace(line)
}

// splitArgs splits a macro's arguments at spaces outside double quotes.
func splitArgs(s string) []string {
	var args []string
	var cur strings.Builder
	quoted, started := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, started = !quoted, true
		case r == ' ' && !quoted:
			if started {
				args = append(args, cur.String())
			}
			cur.Reset()
			started = false
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		args = append(args, cur.String())
	}
	return args
}
