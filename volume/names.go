// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// TopDirs are the directories of a pool, one per vid prefix, as
// file-reflink and dom0's udev rules know them: templates first, since
// AppVMs share their data and a pass over them should come first.
var TopDirs = []string{"vm-templates", "appvms"}

// StateDir is the pool's own directory of daemon state, beneath dir_path.
// Its name does not match the udev patterns for VM images, and no vid can
// name it (a vid starts with appvms/ or vm-templates/).
const StateDir = ".btrfs-vdo"

var (
	componentPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
	revisionPattern  = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	// revisionFile matches "<vol>.img.<N>@<timestamp>Z" after the volume name.
	revisionFile = regexp.MustCompile(`^\.img\.([1-9][0-9]{0,18})@([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})Z$`)
	// revisionGlob is file-reflink's revision glob after the volume name,
	// "<vol>.img.*?@????-??-??T??:??:??Z": every name it would list,
	// including those whose number is no revision id of ours.
	revisionGlob = regexp.MustCompile(`^\.img\.[^/]+@[^/]{4}-[^/]{2}-[^/]{2}T[^/]{2}:[^/]{2}:[^/]{2}Z$`)
)

// maxRevision is the largest revision number: ids have at most 19 digits,
// so that every one fits a uint64 and sorts as a number.
const maxRevision = 9999999999999999999

// Paths holds every file name of one volume, relative to the pool directory.
type Paths struct {
	Dir      string // appvms/work
	Name     string // private
	Clean    string // appvms/work/private.img
	Dirty    string // appvms/work/private-dirty.img
	Precache string // appvms/work/private-precache.img
	Import   string // appvms/work/private-import.img
}

// PathsFor validates vid and derives the volume's file names from it.
func PathsFor(vid string) (Paths, error) {
	if err := ValidateVID(vid); err != nil {
		return Paths{}, err
	}
	dir, name := path.Split(vid)
	dir = strings.TrimSuffix(dir, "/")
	base := dir + "/" + name
	return Paths{
		Dir:      dir,
		Name:     name,
		Clean:    base + ".img",
		Dirty:    base + "-dirty.img",
		Precache: base + "-precache.img",
		Import:   base + "-import.img",
	}, nil
}

// Revision is the file name of revision id taken at timestamp.
func (p Paths) Revision(id, timestamp string) string {
	return p.Clean + "." + id + "@" + timestamp + "Z"
}

// ownsFile reports whether name, a file in p.Dir, belongs to this volume,
// either as one of its images or as a temp file of one. Matching exact
// names keeps volume "private" from claiming "private2.img~x".
func (p Paths) ownsFile(name string) bool {
	base, _, _ := strings.Cut(name, "~")
	for _, own := range []string{p.Clean, p.Dirty, p.Precache, p.Import} {
		if base == path.Base(own) {
			return true
		}
	}
	rest, ok := strings.CutPrefix(base, p.Name)
	return ok && revisionFile.MatchString(rest)
}

// matchesRevisionGlob reports whether name, a file in p.Dir, is one that
// file-reflink's revision glob of this volume would list, a revision of
// ours or not. Remove deletes these too, so that no file of the volume
// outlives it.
func (p Paths) matchesRevisionGlob(name string) bool {
	rest, ok := strings.CutPrefix(name, p.Name)
	return ok && revisionGlob.MatchString(rest)
}

// parseRevision returns the revision id and timestamp encoded in name, a
// file in p.Dir.
func (p Paths) parseRevision(name string) (id, timestamp string, ok bool) {
	rest, found := strings.CutPrefix(name, p.Name)
	if !found {
		return "", "", false
	}
	m := revisionFile.FindStringSubmatch(rest)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// ValidateVID refuses any vid that is not exactly
// "appvms|vm-templates/<vm>/<volume>" with safe components, and any
// volume name whose files could be another volume's in the same
// directory (see volumeNameClash).
func ValidateVID(vid string) error {
	parts := strings.Split(vid, "/")
	if len(parts) != 3 {
		return invalidName("vid %q: want <appvms|vm-templates>/<vm>/<volume>", vid)
	}
	if !contains(TopDirs, parts[0]) {
		return invalidName("vid %q: first component must be one of %v", vid, TopDirs)
	}
	for _, part := range parts[1:] {
		if strings.Contains(part, "..") || !componentPattern.MatchString(part) {
			return invalidName("vid %q: component %q is not allowed", vid, part)
		}
	}
	if clash := volumeNameClash(parts[2]); clash != "" {
		return invalidName("vid %q: volume name %s, so its files could be another volume's", vid, clash)
	}
	return nil
}

// imageSuffixes are what the file-reflink layout appends to a volume
// name before ".img" for its images other than the clean one.
var imageSuffixes = []string{"-dirty", "-precache", "-import"}

// volumeNameClash says why files of volume name could be those of
// another volume in the same directory, or "" when they cannot: volume
// "private-dirty"'s clean image is "private"'s dirty image, and volume
// "private.img"'s revisions match the revision glob of "private"
// ("private.img.*@…Z"). Temp-file and revision characters ('~', '@',
// ':') are refused by componentPattern already.
func volumeNameClash(name string) string {
	for _, suffix := range imageSuffixes {
		if strings.HasSuffix(name, suffix) {
			return fmt.Sprintf("ends in %q", suffix)
		}
	}
	if strings.Contains(name, ".img") {
		return `contains ".img"`
	}
	return ""
}

// ValidateRevision refuses a revision id that is not a decimal number.
func ValidateRevision(id string) error {
	if !revisionPattern.MatchString(id) {
		return invalidName("revision %q: want a decimal revision number", id)
	}
	return nil
}

func revisionNumber(id string) uint64 {
	n, _ := strconv.ParseUint(id, 10, 64)
	return n
}

func contains(list []string, s string) bool {
	for _, item := range list {
		if item == s {
			return true
		}
	}
	return false
}

func invalidName(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidName}, args...)...)
}
