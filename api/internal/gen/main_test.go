// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The generated files in the tree are what the Go types generate now.
func TestGeneratedFilesUpToDate(t *testing.T) {
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("%d generated files, want schema.json and ops.py", len(files))
	}
	apiDir := filepath.Join("..", "..")
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(apiDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./api", name)
		}
	}
}
