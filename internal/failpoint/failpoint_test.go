// SPDX-License-Identifier: GPL-2.0-or-later

package failpoint

import (
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

var update = flag.Bool("update", false, "rewrite names.txt from the failpoints in the source")

// namePattern is "<operation>.<step>", lower case words joined by hyphens.
var namePattern = regexp.MustCompile(`^[a-z]+(-[a-z]+)*\.[a-z]+(-[a-z]+)*$`)

// TestNamesMatchSource keeps names.txt, which the crash test walks, equal
// to the failpoints in the code, so a new failpoint cannot go untested.
func TestNamesMatchSource(t *testing.T) {
	found := hitsInModule(t, "../..")
	if *update {
		if err := os.WriteFile("names.txt", []byte(strings.Join(found, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if listed := Names(); !slices.Equal(listed, found) {
		t.Fatalf("names.txt lists %v,\nthe source has %v;\nrun go test ./internal/failpoint -update", listed, found)
	}
}

// hitsInModule returns the sorted names of every failpoint.Hit call in the
// non-test Go files under root, failing on a name that is not a string
// literal, is malformed or is used twice.
func hitsInModule(t *testing.T, root string) []string {
	t.Helper()
	where := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || !isHit(call.Fun) {
				return true
			}
			pos := fset.Position(call.Pos()).String()
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: failpoint name is not a string literal", pos)
				return true
			}
			name, _ := strconv.Unquote(lit.Value)
			if !namePattern.MatchString(name) {
				t.Errorf("%s: failpoint %q is not <operation>.<step>", pos, name)
			}
			if prev, dup := where[name]; dup {
				t.Errorf("%s: failpoint %q is also at %s", pos, name, prev)
			}
			where[name] = pos
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(where))
	for name := range where {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func isHit(fun ast.Expr) bool {
	sel, ok := fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Hit" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "failpoint"
}

func TestParse(t *testing.T) {
	tests := []struct {
		value string
		want  []string
	}{
		{"", nil},
		{"commit.after-rename", []string{"commit.after-rename"}},
		{"a.b, c.d,,", []string{"a.b", "c.d"}},
	}
	for _, tt := range tests {
		got := parse(tt.value)
		if len(got) != len(tt.want) {
			t.Errorf("parse(%q) = %v, want %v", tt.value, got, tt.want)
		}
		for _, name := range tt.want {
			if !got[name] {
				t.Errorf("parse(%q) lacks %q", tt.value, name)
			}
		}
	}
}

// childEnv makes the test binary hit an armed failpoint; TestHitKills
// runs it so.
const childEnv = "BTRFS_VDO_FAILPOINT_CHILD"

func TestHitKills(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		Hit("test.unarmed")
		Hit("test.armed")
		t.Fatal("survived an armed failpoint")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKills$")
	cmd.Env = append(os.Environ(), childEnv+"=1", Env+"=other.point,test.armed")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child: %v: %s", err, out)
	}
	status := exit.Sys().(syscall.WaitStatus)
	if !status.Signaled() || status.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL: %s", status, out)
	}
	if !strings.Contains(string(out), "failpoint test.armed: killing the process") {
		t.Fatalf("child output lacks the failpoint line: %s", out)
	}
}
