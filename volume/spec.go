// SPDX-License-Identifier: GPL-2.0-or-later

package volume

// Spec is a volume's configuration as qubesd holds it at the moment of an
// operation. qubesd changes RW and RevisionsToKeep without telling the
// driver, so a Spec is passed to every operation instead of being stored.
type Spec struct {
	VID             string
	RW              bool
	SaveOnStop      bool
	SnapOnStart     bool
	RevisionsToKeep int
	Size            int64
	Source          string // vid of the snapshot source, "" for none
}

// Kind is a cell of qubesd's volume-type matrix.
type Kind int

// Volume kinds, by save_on_stop and snap_on_start.
const (
	Volatile Kind = iota // neither: an empty scratch image at each start
	Snapshot             // snap_on_start: a throw-away copy of the source
	Origin               // save_on_stop: committed at each stop, with revisions
)

func (k Kind) String() string {
	return [...]string{"volatile", "snapshot", "origin"}[k]
}

// Kind classifies the volume. Save-on-stop snapshots are refused by the
// shim's init_volume, as Qubes' own file driver does.
func (s Spec) Kind() Kind {
	switch {
	case s.SaveOnStop:
		return Origin
	case s.SnapOnStart:
		return Snapshot
	default:
		return Volatile
	}
}

// SnapshotsDisabled is qubesd's revisions_to_keep = -1: the running volume
// exists only as its dirty image, with no clean image, precache or revision.
func (s Spec) SnapshotsDisabled() bool { return s.RevisionsToKeep == -1 }

// Revision is one saved state of a volume.
type Revision struct {
	ID        string
	Timestamp string // UTC, YYYY-MM-DDTHH:MM:SS
}

// State is what is on disk for a volume.
type State struct {
	Size      int64
	Usage     int64
	Dirty     bool
	Revisions []Revision // oldest first
}
