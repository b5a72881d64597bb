// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"encoding/json"
	"errors"
	"os"
	"path"
	"testing"
)

// pathsTable is api/testdata/paths.json, which pins the vid and revision
// rules for the daemon and the shim alike.
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

func TestPathsJSON(t *testing.T) {
	data, err := os.ReadFile("../api/testdata/paths.json")
	if err != nil {
		t.Fatal(err)
	}
	var table pathsTable
	if err := json.Unmarshal(data, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Valid) == 0 || len(table.InvalidVIDs) == 0 || len(table.InvalidRevisions) == 0 {
		t.Fatal("paths.json has an empty section")
	}
	for _, c := range table.Valid {
		p, err := PathsFor(c.VID)
		if err != nil {
			t.Errorf("valid vid %q refused: %v", c.VID, err)
			continue
		}
		got := []string{p.Clean, p.Dirty, p.Precache, p.Import}
		want := []string{c.Clean, c.Dirty, c.Precache, c.Import}
		for i := range got {
			if abs := path.Join(c.DirPath, got[i]); abs != want[i] {
				t.Errorf("vid %q: %s, want %s", c.VID, abs, want[i])
			}
		}
		for _, r := range c.Revisions {
			if abs := path.Join(c.DirPath, p.Revision(r.ID, r.Timestamp)); abs != r.Path {
				t.Errorf("vid %q revision %s: %s, want %s", c.VID, r.ID, abs, r.Path)
			}
			if id, ts, ok := p.parseRevision(path.Base(r.Path)); !ok || id != r.ID || ts != r.Timestamp {
				t.Errorf("vid %q: %s does not parse back", c.VID, r.Path)
			}
		}
	}
	for _, vid := range table.InvalidVIDs {
		if err := ValidateVID(vid); !errors.Is(err, ErrInvalidName) {
			t.Errorf("invalid vid %q: error %v, want ErrInvalidName", vid, err)
		}
	}
	for _, rev := range table.InvalidRevisions {
		if err := ValidateRevision(rev); !errors.Is(err, ErrInvalidName) {
			t.Errorf("invalid revision %q: error %v, want ErrInvalidName", rev, err)
		}
	}
}
