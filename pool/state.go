package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"github.com/btrfs-vdo/btrfs-vdo/internal/failpoint"
)

// StateDir is the pool's own directory of daemon state, beneath dir_path.
// Its name does not match the udev patterns for VM images, and no vid can
// name it (a vid starts with appvms/ or vm-templates/).
const StateDir = ".btrfs-vdo"

const stateFile = "state.json"

// stateVersion changes when the file's meaning does; an unknown version
// is set aside, not misread.
const stateVersion = 1

// state is what must survive a daemon restart: the generation at which
// each running origin volume started, the optimiser jobs not done, and
// how far full passes got through each file.
type state struct {
	Version int               `json:"version"`
	Started map[string]uint64 `json:"started"` // vid -> fs generation at start
	Jobs    []Job             `json:"jobs"`
	// Processed: vid -> file name -> the full pass's mark on that file.
	Processed map[string]map[string]fileMark `json:"processed,omitempty"`
	// Commits and Saved are the pool's totals: commits that landed, and
	// disk bytes its optimizer jobs freed.
	Commits uint64 `json:"commits,omitempty"`
	Saved   uint64 `json:"saved,omitempty"`
}

// stateStore keeps a pool's state in memory and on disk.
type stateStore struct {
	mu   sync.Mutex
	path string
	st   state
	lazy lazyWrite
}

func openState(poolDir string) (*stateStore, error) {
	dir := filepath.Join(poolDir, StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	s := &stateStore{path: filepath.Join(dir, stateFile), st: emptyState()}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil || st.Version != stateVersion {
		// A torn or foreign file costs only optimisation work: start over
		// and keep the old file for inspection.
		_ = os.Rename(s.path, s.path+".bad")
		return s, nil
	}
	if st.Started == nil {
		st.Started = map[string]uint64{}
	}
	if st.Processed == nil {
		st.Processed = map[string]map[string]fileMark{}
	}
	s.st = st
	return s, nil
}

func emptyState() state {
	return state{Version: stateVersion, Started: map[string]uint64{}, Jobs: []Job{},
		Processed: map[string]map[string]fileMark{}}
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
	return writeFileDurably(s.path, data)
}

// read returns a copy of the state.
func (s *stateStore) read() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.clone()
}

func (st state) clone() state {
	c := state{Version: st.Version, Started: map[string]uint64{}, Jobs: append([]Job{}, st.Jobs...),
		Processed: map[string]map[string]fileMark{}, Commits: st.Commits, Saved: st.Saved}
	for k, v := range st.Started {
		c.Started[k] = v
	}
	for vid, marks := range st.Processed {
		c.Processed[vid] = maps.Clone(marks)
	}
	return c
}

func writeFileDurably(path string, data []byte) error {
	tmp := path + "~"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	failpoint.Hit("state.after-temp-write")
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	failpoint.Hit("state.after-rename")
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Dir(path), err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
