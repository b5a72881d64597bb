// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
)

const stateFile = "state.json"

// stateVersion changes when the file's meaning does; an unknown version
// is set aside, not misread.
const stateVersion = 1

// state is what must survive a daemon restart: the generation at which
// each running origin volume started, the optimizer jobs not done, and
// how far full passes got through each file.
type state struct {
	Version int               `json:"version"`
	Started map[string]uint64 `json:"started"` // vid -> fs generation at start
	Jobs    []Job             `json:"jobs"`
	// Processed: vid -> file name -> the full pass's mark on that file.
	Processed map[string]map[string]fileMark `json:"processed,omitempty"`
	// Examined: vid -> how far jobs examined the volume (processed.go).
	Examined map[string]examinedMark `json:"examined,omitempty"`
	// Commits counts the commits that landed in the pool. The bytes its
	// jobs saved are kept in UsageFile, which the driver reads.
	Commits uint64 `json:"commits,omitempty"`
	// Cold: vid -> what the cold pass knows of the volume; ColdWritten:
	// the generations at which cold passes wrote (cold_policy.go).
	Cold        map[string]coldMarks `json:"cold,omitempty"`
	ColdWritten []genRange           `json:"cold_written,omitempty"`
}

// stateStore keeps a pool's state in memory and on disk.
type stateStore struct {
	mu   sync.Mutex
	dir  *fsroot.Root // the pool's StateDir
	st   state
	lazy lazyWrite
}

// maxStateBytes bounds what is read of a state file: a few hundred bytes
// per volume and job, so a file larger than this is not one the daemon
// wrote.
const maxStateBytes = 64 << 20

// openState reads the pool's state from the state directory dir. A torn,
// foreign or oversized file, or something other than a file of its own,
// costs only optimization work: it is set aside, logged, and the state
// starts over, so that it cannot stop the daemon at every start.
func openState(dir *fsroot.Root, log *slog.Logger) (*stateStore, error) {
	s := &stateStore{dir: dir, st: emptyState()}
	st, err := readState(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case errors.Is(err, errBadState) || errors.Is(err, fsroot.ErrNotOwnFile):
		aside := stateFile + ".bad"
		if renameErr := dir.Rename(stateFile, aside); renameErr != nil {
			aside = "" // a directory, say, where the state file should be
			err = errors.Join(err, renameErr, dir.RemoveAll(stateFile))
		}
		log.Warn("pool state unreadable; set aside and started afresh", "dir", dir.Name(), "aside", aside, "err", err)
		return s, nil
	case err != nil:
		return nil, err
	}
	if st.Started == nil {
		st.Started = map[string]uint64{}
	}
	if st.Processed == nil {
		st.Processed = map[string]map[string]fileMark{}
	}
	if st.Examined == nil {
		st.Examined = map[string]examinedMark{}
	}
	if st.Cold == nil {
		st.Cold = map[string]coldMarks{}
	}
	s.st = st
	return s, nil
}

// errBadState means the state file is not one this daemon can use.
var errBadState = errors.New("bad state file")

func readState(dir *fsroot.Root) (state, error) {
	var st state
	f, err := dir.OpenOwnFile(stateFile, os.O_RDONLY)
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if info.Size() > maxStateBytes {
		return st, fmt.Errorf("%w: %s is over %d bytes", errBadState, f.Name(), maxStateBytes)
	}
	// Read no more than the size said, whatever the file grew to since.
	data, err := io.ReadAll(io.LimitReader(f, info.Size()))
	if err != nil {
		return st, fmt.Errorf("read state %s: %w", f.Name(), err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%w: %s: %w", errBadState, f.Name(), err)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("%w: %s: version %d, want %d", errBadState, f.Name(), st.Version, stateVersion)
	}
	return st, nil
}

func emptyState() state {
	return state{Version: stateVersion, Started: map[string]uint64{}, Jobs: []Job{},
		Processed: map[string]map[string]fileMark{}, Examined: map[string]examinedMark{}, Cold: map[string]coldMarks{}}
}

// update changes the state with fn and writes it durably before
// returning: temp file, fsync, rename, fsync of the directory. If the
// write fails, the change still holds in memory until a restart.
func (s *stateStore) update(fn func(*state)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
	return s.writeLocked()
}

// tryUpdate is update for a change the caller acts on only once it is on
// disk, such as a new job: if the write fails, it is undone in memory
// too, so that no job is listed that nothing will run.
func (s *stateStore) tryUpdate(fn func(*state)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.clone()
	fn(&s.st)
	err := s.writeLocked()
	if err != nil {
		s.st = old
	}
	return err
}

func (s *stateStore) writeLocked() error {
	data, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	s.lazy.written()
	return s.dir.WriteFileDurably(stateFile, data)
}

// read returns a copy of the state.
func (s *stateStore) read() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.clone()
}

// view runs fn on the state itself, under the store's lock, for reads
// that need a few fields and not a copy of all of it: fn neither keeps
// nor changes what it is given.
func (s *stateStore) view(fn func(*state)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
}

func (st state) clone() state {
	c := state{Version: st.Version, Started: map[string]uint64{}, Jobs: append([]Job{}, st.Jobs...),
		Processed: map[string]map[string]fileMark{}, Examined: maps.Clone(st.Examined), Commits: st.Commits,
		Cold: maps.Clone(st.Cold), ColdWritten: slices.Clone(st.ColdWritten)}
	for k, v := range st.Started {
		c.Started[k] = v
	}
	for vid, marks := range st.Processed {
		c.Processed[vid] = maps.Clone(marks)
	}
	return c
}
