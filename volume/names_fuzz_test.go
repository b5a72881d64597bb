// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzValidateVID checks the names that decide which files the daemon
// touches: whatever vid, revision id or directory entry arrives, nothing
// panics, and anything accepted names files beneath the pool.
func FuzzValidateVID(f *testing.F) {
	f.Add("appvms/work/private", "1", "private.img.1@2025-01-01T00:00:00Z")
	f.Add("vm-templates/fedora-42/root", "18446744073709551615", "private.img.01@2025-01-01T00:00:00Z")
	f.Add("appvms/../../etc", "../1", "private.img.1@2025-01-01T00:00:00Z~a1b2")
	f.Add("appvms/work/private", "1", "private-dirty")
	f.Add("appvms/work/private", "2", "private.img")
	f.Add("appvms/work/root", "3", "root-precache")
	f.Add("appvms/work/private", "9999999999999999999", "private.img.10000000000000000000@2025-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, vid, rev, name string) {
		p, err := PathsFor(vid)
		if (err == nil) != (ValidateVID(vid) == nil) {
			t.Fatalf("PathsFor and ValidateVID disagree on %q: %v", vid, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Fatalf("vid %q refused with %v, not ErrInvalidName", vid, err)
		}
		revErr := ValidateRevision(rev)
		if revErr != nil && !errors.Is(revErr, ErrInvalidName) {
			t.Fatalf("revision %q refused with %v, not ErrInvalidName", rev, revErr)
		}
		if err != nil {
			return
		}
		checkBeneathPool(t, vid, p)
		const timestamp = "2025-01-01T00:00:00"
		if revErr == nil {
			file := p.Revision(rev, timestamp)
			checkBeneathPool(t, vid, Paths{Dir: p.Dir, Clean: file})
			id, ts, ok := p.parseRevision(path.Base(file))
			if !ok || id != rev || ts != timestamp || !p.ownsFile(path.Base(file)) {
				t.Fatalf("revision %q of %q: %s does not parse back (%q %q %v)", rev, vid, file, id, ts, ok)
			}
		}
		// Two volumes of one directory never claim each other's files,
		// revisions and temp files included.
		if other, err := PathsFor(p.Dir + "/" + name); err == nil && other.Name != p.Name {
			checkNoClash(t, p, other)
			checkNoClash(t, other, p)
		}
		// A directory entry taken for a revision names a valid id and is
		// exactly the file that revision's name leads back to.
		if id, ts, ok := p.parseRevision(name); ok {
			if err := ValidateRevision(id); err != nil {
				t.Fatalf("entry %q of %q parsed as invalid revision %q: %v", name, vid, id, err)
			}
			if back := path.Base(p.Revision(id, ts)); back != name {
				t.Fatalf("entry %q of %q parsed as revision %q@%q, which names %q", name, vid, id, ts, back)
			}
			if !p.matchesRevisionGlob(name) {
				t.Fatalf("revision %q of %q is not matched by the revision glob", name, vid)
			}
		}
	})
}

// checkNoClash fails if volume a owns any file of volume b: an image, a
// revision or a temp file of either.
func checkNoClash(t *testing.T, a, b Paths) {
	t.Helper()
	const timestamp = "2025-01-01T00:00:00"
	for _, name := range []string{b.Clean, b.Dirty, b.Precache, b.Import, b.Revision("1", timestamp)} {
		for _, file := range []string{path.Base(name), path.Base(name) + "~a1b2"} {
			if a.ownsFile(file) {
				t.Fatalf("volume %q owns %q of volume %q", a.Name, file, b.Name)
			}
			if a.matchesRevisionGlob(file) {
				t.Fatalf("volume %q's revision glob matches %q of volume %q", a.Name, file, b.Name)
			}
			if _, _, ok := a.parseRevision(file); ok {
				t.Fatalf("volume %q takes %q of volume %q for a revision", a.Name, file, b.Name)
			}
		}
	}
}

// checkBeneathPool fails unless every name in p is a clean relative path
// of exactly three components, none of them "." or "..", inside the
// volume's directory. (".." inside a file name, as in "0..img" of volume
// "0.", is just a name.)
func checkBeneathPool(t *testing.T, vid string, p Paths) {
	t.Helper()
	if p.Name != "" && p.Dir+"/"+p.Name != vid {
		t.Fatalf("vid %q does not round-trip: dir %q, name %q", vid, p.Dir, p.Name)
	}
	for _, name := range []string{p.Clean, p.Dirty, p.Precache, p.Import} {
		if name == "" {
			continue
		}
		parts := strings.Split(name, "/")
		switch {
		case len(parts) != 3:
			t.Fatalf("vid %q: %q does not have 3 components", vid, name)
		case path.Clean(name) != name || strings.HasPrefix(name, "/"):
			t.Fatalf("vid %q: %q is not a clean relative path", vid, name)
		case slices.ContainsFunc(parts, func(c string) bool { return c == "." || c == ".." }):
			t.Fatalf("vid %q: %q has a . or .. component", vid, name)
		case strings.ContainsAny(name, "\x00\n"):
			t.Fatalf("vid %q: %q contains a control byte", vid, name)
		case path.Dir(name) != p.Dir:
			t.Fatalf("vid %q: %q is outside the volume's directory %q", vid, name, p.Dir)
		case !strings.HasPrefix(filepath.Join("/pool", name), "/pool/"+p.Dir+"/"):
			t.Fatalf("vid %q: %q leaves the pool", vid, name)
		}
	}
}
