// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// Every command's --json prints one object whose keys, at every depth,
// are snake_case.
func TestJSONIsOneSnakeCaseObject(t *testing.T) {
	socket, p := optimizedPool(t)
	tree := filepath.Join(filepath.Dir(p.DirPath), "usr")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "lib"), compressible(1<<20, "lib"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status", "--json"},
		{"stats", "--json"},
		{"stats", "--json", "work"},
		{"optimize", "--json", "--no-wait", p.Name},
		{"optimize", "--json", p.Name + ":appvms/work/private"},
		{"jobs", "--json", "--wait"},
		{"compress", "--json", tree},
		{"version", "--json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := cli(t, socket, args...)
			if r.code != exitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var v any
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, r.stdout)
			}
			if _, ok := v.(map[string]any); !ok {
				t.Fatalf("not one object:\n%s", r.stdout)
			}
			checkKeys(t, "", v)
		})
	}
}

func checkKeys(t *testing.T, at string, v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if !snakeCase.MatchString(k) {
				t.Errorf("key %q at %s is not snake_case", k, at)
			}
			checkKeys(t, at+"."+k, child)
		}
	case []any:
		for _, child := range v {
			checkKeys(t, at+"[]", child)
		}
	}
}
