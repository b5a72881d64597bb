package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TopDirs are the directories every pool has, one per vid prefix.
var TopDirs = []string{"appvms", "vm-templates"}

// ErrNoReflinks means the pool's filesystem cannot share extents.
var ErrNoReflinks = errors.New("the filesystem does not support reflinks")

// Pool is one pool directory and its volumes.
type Pool struct {
	Name    string
	Volumes *volume.Store
	commits atomic.Uint64
	log     *slog.Logger
}

// Commits counts the commits that landed in this pool since the daemon
// started.
func (p *Pool) Commits() uint64 { return p.commits.Load() }

// Usage reports the filesystem's size and used bytes, as file-reflink does.
func (p *Pool) Usage() (size, used int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p.Volumes.Dir(), &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", p.Volumes.Dir(), err)
	}
	return int64(st.Frsize) * int64(st.Blocks), int64(st.Frsize) * int64(st.Blocks-st.Bfree), nil
}

// committed is the volume store's commit hook.
func (p *Pool) committed(c volume.Committed) bool {
	p.commits.Add(1)
	p.log.Debug("commit handed to optimiser", "pool", p.Name, "vid", c.VID, "image", c.Clean)
	return false
}

// Registry opens each pool directory once and keeps it open.
type Registry struct {
	log   *slog.Logger
	mu    sync.Mutex
	pools map[string]*Pool // by directory
	// writing is passed to every store as volume.Hooks.Writing.
	writing func(op, vid string) (done func())
}

// NewRegistry returns an empty registry. writing, which may be nil, is
// told when each file-changing volume operation begins and ends.
func NewRegistry(log *slog.Logger, writing func(op, vid string) (done func())) *Registry {
	return &Registry{log: log, pools: map[string]*Pool{}, writing: writing}
}

// Open returns the pool at dir, opening it on first use. qubesd never
// announces its pools to the daemon (setup runs only when a pool is added),
// so any request may be the first for a pool.
func (r *Registry) Open(name, dir string) (*Pool, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pools[dir]; ok {
		return p, nil
	}
	p := &Pool{Name: name, log: r.log}
	store, err := volume.Open(dir, r.log, volume.Hooks{Committed: p.committed, Writing: r.writing})
	if err != nil {
		return nil, err
	}
	p.Volumes = store
	r.pools[dir] = p
	r.log.Info("opened pool", "pool", name, "dir", dir)
	return p, nil
}

// List returns the open pools.
func (r *Registry) List() []*Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	pools := make([]*Pool, 0, len(r.pools))
	for _, p := range r.pools {
		pools = append(pools, p)
	}
	return pools
}

// Close closes every pool.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for dir, p := range r.pools {
		errs = append(errs, p.Volumes.Close())
		delete(r.pools, dir)
	}
	return errors.Join(errs...)
}

// SetupResult says what Setup found.
type SetupResult struct {
	Btrfs, Reflinks bool
}

// Setup creates dir and its top directories and, when check is set,
// refuses a filesystem without reflinks, removing dir again if it created
// it. This is qvm-pool add's one chance to tell the user.
func Setup(dir string, check bool) (SetupResult, error) {
	if err := checkDirPath(dir); err != nil {
		return SetupResult{}, err
	}
	created, err := mkdirSynced(dir)
	if err != nil {
		return SetupResult{}, err
	}
	var res SetupResult
	if res.Btrfs, err = btrfs.IsBtrfs(dir); err != nil {
		return res, err
	}
	if res.Reflinks, err = btrfs.SupportsReflink(dir); err != nil {
		return res, err
	}
	if check && !res.Reflinks {
		if created {
			_ = os.Remove(dir)
		}
		return res, fmt.Errorf("%w: %s (use a btrfs filesystem, or pass setup_check=False to accept slow full copies)", ErrNoReflinks, dir)
	}
	for _, top := range TopDirs {
		if _, err := mkdirSynced(filepath.Join(dir, top)); err != nil {
			return res, err
		}
	}
	return res, nil
}

func mkdirSynced(dir string) (created bool, err error) {
	err = os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		info, statErr := os.Stat(dir)
		if statErr == nil && info.IsDir() {
			return false, nil
		}
		return false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	if err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	parent, err := os.Open(filepath.Dir(dir))
	if err != nil {
		return true, fmt.Errorf("open %s: %w", filepath.Dir(dir), err)
	}
	defer parent.Close()
	if err := parent.Sync(); err != nil {
		return true, fmt.Errorf("fsync %s: %w", filepath.Dir(dir), err)
	}
	return true, nil
}

func checkDirPath(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("%w: pool directory %q must be a clean absolute path", volume.ErrInvalidName, dir)
	}
	return nil
}

func checkDir(dir string) error {
	if err := checkDirPath(dir); err != nil {
		return err
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pool directory: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("pool directory %s is not a directory", dir)
	}
	return nil
}
