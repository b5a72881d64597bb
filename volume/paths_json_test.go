// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"encoding/json"
	"errors"
	"os"
	"path"
	"slices"
	"testing"
)

// pathsTable is api/testdata/paths.json, which pins the vid to file name
// rules for the daemon and the Python driver alike
// (qubesd-shim/tests/test_paths.py reads it too).
type pathsTable struct {
	Valid []struct {
		DirPath   string `json:"dir_path"`
		VID       string `json:"vid"`
		Clean     string `json:"clean"`
		Dirty     string `json:"dirty"`
		Precache  string `json:"precache"`
		Import    string `json:"import"`
		Revisions []struct {
			ID        string `json:"id"`
			Timestamp string `json:"timestamp"`
			Path      string `json:"path"`
		} `json:"revisions"`
	} `json:"valid"`
	InvalidVIDs      []string `json:"invalid_vids"`
	InvalidRevisions []string `json:"invalid_revisions"`
}

func readPathsTable(t *testing.T) pathsTable {
	t.Helper()
	raw, err := os.ReadFile("../api/testdata/paths.json")
	if err != nil {
		t.Fatal(err)
	}
	var table pathsTable
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatalf("api/testdata/paths.json: %v", err)
	}
	if len(table.Valid) == 0 || len(table.InvalidVIDs) == 0 || len(table.InvalidRevisions) == 0 {
		t.Fatalf("api/testdata/paths.json lacks cases: %d valid, %d invalid vids, %d invalid revisions",
			len(table.Valid), len(table.InvalidVIDs), len(table.InvalidRevisions))
	}
	return table
}

// Every valid vid derives exactly the file names the table gives, and the
// revision names parse back to their id and timestamp.
func TestPathsJSONValid(t *testing.T) {
	for _, tc := range readPathsTable(t).Valid {
		t.Run(tc.VID, func(t *testing.T) {
			if err := ValidateVID(tc.VID); err != nil {
				t.Fatalf("ValidateVID: %v", err)
			}
			p, err := PathsFor(tc.VID)
			if err != nil {
				t.Fatalf("PathsFor: %v", err)
			}
			abs := func(name string) string { return path.Join(tc.DirPath, name) }
			for _, f := range []struct{ what, got, want string }{
				{"clean", abs(p.Clean), tc.Clean},
				{"dirty", abs(p.Dirty), tc.Dirty},
				{"precache", abs(p.Precache), tc.Precache},
				{"import", abs(p.Import), tc.Import},
				{"directory", abs(p.Dir), path.Dir(tc.Clean)},
			} {
				if f.got != f.want {
					t.Errorf("%s: %q, want %q", f.what, f.got, f.want)
				}
			}
			for _, rev := range tc.Revisions {
				if err := ValidateRevision(rev.ID); err != nil {
					t.Errorf("ValidateRevision(%q): %v", rev.ID, err)
				}
				if got := abs(p.Revision(rev.ID, rev.Timestamp)); got != rev.Path {
					t.Errorf("revision %s: %q, want %q", rev.ID, got, rev.Path)
				}
				name := path.Base(rev.Path)
				id, stamp, ok := p.parseRevision(name)
				if !ok || id != rev.ID || stamp != rev.Timestamp {
					t.Errorf("parseRevision(%q) = %q, %q, %v; want %q, %q", name, id, stamp, ok, rev.ID, rev.Timestamp)
				}
				if !p.ownsFile(name) {
					t.Errorf("%s does not own its revision %q", tc.VID, name)
				}
			}
			for _, own := range []string{p.Clean, p.Dirty, p.Precache, p.Import} {
				if !p.ownsFile(path.Base(own)) {
					t.Errorf("%s does not own its file %q", tc.VID, own)
				}
			}
			checkFiles(t, tc.VID, p, map[string]FileKind{
				tc.Clean: CleanFile, tc.Dirty: DirtyFile, tc.Precache: PrecacheFile, tc.Import: ImportFile,
			}, tc.DirPath)
			for _, rev := range tc.Revisions {
				f, ok := p.fileOf(path.Base(rev.Path))
				if want := (Revision{ID: rev.ID, Timestamp: rev.Timestamp}); !ok || f.Kind() != RevisionFile || f.Revision() != want {
					t.Errorf("fileOf(%q) = %+v, %v; want revision %+v", path.Base(rev.Path), f, ok, want)
				}
			}
		})
	}
}

// checkFiles: each of want's paths (absolute, in dir) is the File of its
// kind, and the name of a file in the volume's directory leads back to it.
func checkFiles(t *testing.T, vid string, p Paths, want map[string]FileKind, dir string) {
	t.Helper()
	for abs, kind := range want {
		f := p.file(kind)
		if path.Join(dir, f.Name()) != abs || f.VID() != vid || f.Kind() != kind {
			t.Errorf("%s file: %+v, want %s", kind, f, abs)
		}
		if back, ok := p.fileOf(path.Base(abs)); !ok || back != f {
			t.Errorf("fileOf(%q) = %+v, %v; want %+v", path.Base(abs), back, ok, f)
		}
	}
	for _, name := range []string{path.Base(p.Clean) + "~1a2b3c", path.Base(p.Clean) + ".01@2025-01-01T00:00:00Z", p.Name} {
		if f, ok := p.fileOf(name); ok {
			t.Errorf("fileOf(%q) = %+v, want no file", name, f)
		}
	}
}

// Every invalid vid and revision id is refused as an invalid name, before
// any path is derived from it.
func TestPathsJSONInvalid(t *testing.T) {
	table := readPathsTable(t)
	for _, vid := range table.InvalidVIDs {
		t.Run("vid "+vid, func(t *testing.T) {
			if err := ValidateVID(vid); !errors.Is(err, ErrInvalidName) {
				t.Errorf("ValidateVID(%q) = %v, want ErrInvalidName", vid, err)
			}
			if p, err := PathsFor(vid); !errors.Is(err, ErrInvalidName) || p != (Paths{}) {
				t.Errorf("PathsFor(%q) = %+v, %v; want ErrInvalidName", vid, p, err)
			}
		})
	}
	for _, rev := range table.InvalidRevisions {
		t.Run("revision "+rev, func(t *testing.T) {
			if err := ValidateRevision(rev); !errors.Is(err, ErrInvalidName) {
				t.Errorf("ValidateRevision(%q) = %v, want ErrInvalidName", rev, err)
			}
		})
	}
	valid := make([]string, 0, len(table.Valid))
	for _, tc := range table.Valid {
		valid = append(valid, tc.VID)
	}
	for _, vid := range table.InvalidVIDs {
		if slices.Contains(valid, vid) {
			t.Errorf("%q is listed both valid and invalid", vid)
		}
	}
}
