// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/pool/optimizer"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// ErrNoReflinks means the pool's filesystem cannot share extents.
var ErrNoReflinks = errors.New("the filesystem does not support reflinks")

// Pool is one pool directory: its volumes, and the optimizer's side of it.
type Pool struct {
	Name      string
	Volumes   *volume.Store
	Optimizer *optimizer.Pool
	log       *slog.Logger
	// dir is the pool directory and stateDir its StateDir, shared with
	// the pool's volumes and optimizer, which release them when idle.
	dir, stateDir *fsroot.Root
	// id is the directory's device and inode when opened: a directory
	// made at the same path since is another pool.
	id knownPool
}

// Commits counts the commits that landed in this pool.
func (p *Pool) Commits() uint64 { return p.Optimizer.Commits() }

// Saved is the disk space the pool's optimizer jobs freed, net.
func (p *Pool) Saved() uint64 { return p.Optimizer.Saved() }

// Usage reports the filesystem's size and used bytes, as file-reflink does.
func (p *Pool) Usage() (size, used int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p.Volumes.Dir(), &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", p.Volumes.Dir(), err)
	}
	return int64(st.Frsize) * int64(st.Blocks), int64(st.Frsize) * int64(st.Blocks-st.Bfree), nil
}

// Registry opens each pool directory once and keeps it open.
type Registry struct {
	log   *slog.Logger
	mu    sync.Mutex
	pools map[string]*Pool // by directory
	// writing is passed to every store as volume.Hooks.Writing.
	writing   func(op, vid string) (done func())
	optimizer *optimizer.Scheduler // nil: commits are not optimized
	// stateDir holds knownFile; "" keeps nothing across restarts.
	stateDir   string
	remembered knownState
	saveSoon   *time.Timer // set while known waits to be written
}

// Config is what a registry is made of.
type Config struct {
	Log *slog.Logger
	// Writing, which may be nil, is told when each file-changing volume
	// operation begins and ends.
	Writing func(op, vid string) (done func())
	// Optimizer runs the jobs of every pool's commits; nil leaves
	// commits as they are written.
	Optimizer *optimizer.Scheduler
	// StateDir is where the daemon remembers the pools it served and the
	// optimizer's totals across restarts; "" remembers nothing.
	StateDir string
}

// NewRegistry returns a registry of no open pools, which knows the pools
// cfg.StateDir remembers.
func NewRegistry(cfg Config) (*Registry, error) {
	r := &Registry{log: cfg.Log, pools: map[string]*Pool{}, writing: cfg.Writing, optimizer: cfg.Optimizer}
	if cfg.StateDir != "" {
		if err := r.remember(cfg.StateDir); err != nil {
			return nil, err
		}
	}
	return r, nil
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
		if p = r.current(p); p != nil {
			return p, nil
		}
	}
	p, err := r.openLocked(name, dir)
	if err != nil {
		return nil, err
	}
	r.rememberLocked(p)
	return p, nil
}

// openLocked opens the pool at dir, which no open pool has, unless an
// open pool reaches the same directory by another path (a symlink): two
// pools would each lock the volumes for itself alone. An open pool whose
// path leads elsewhere now (moved, re-linked) does not count: current
// closes it when it is next used.
func (r *Registry) openLocked(name, dir string) (*Pool, error) {
	dev, ino, err := identify(dir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", dir, err)
	}
	for _, other := range r.pools {
		if other.id.Dev != dev || other.id.Ino != ino {
			continue
		}
		if d, i, err := identify(other.id.Dir); err == nil && d == dev && i == ino {
			return nil, fmt.Errorf("%w: %s is the directory of pool %s (%s)", ErrNested, dir, other.Name, other.id.Dir)
		}
	}
	p, err := r.openPool(name, dir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", dir, err)
	}
	// The directory opened, whatever stood at dir when identify looked.
	dev, ino = p.dir.ID()
	p.id = knownPool{Name: name, Dir: dir, Dev: dev, Ino: ino}
	r.pools[dir] = p
	r.log.Info("opened pool", "pool", name, "dir", dir)
	return p, nil
}

// openPool opens the pool directory, its StateDir, and through the
// optimizer its state and volumes.
func (r *Registry) openPool(name, dir string) (*Pool, error) {
	root, err := fsroot.Open(dir)
	if err != nil {
		return nil, err
	}
	stateDir, err := openStateDir(root)
	if err != nil {
		root.Close()
		return nil, err
	}
	opt, err := optimizer.OpenPool(r.optimizer, optimizer.PoolConfig{
		Name: name, Dir: root, StateDir: stateDir, Log: r.log, Writing: r.writing,
	})
	if err != nil {
		return nil, errors.Join(err, stateDir.Close(), root.Close())
	}
	return &Pool{Name: name, Volumes: opt.Volumes, Optimizer: opt, log: r.log, dir: root, stateDir: stateDir}, nil
}

// List returns the open pools, by name, then directory.
func (r *Registry) List() []*Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pools {
		r.current(p)
	}
	pools := make([]*Pool, 0, len(r.pools))
	for _, p := range r.pools {
		pools = append(pools, p)
	}
	slices.SortFunc(pools, func(a, b *Pool) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Volumes.Dir(), b.Volumes.Dir()))
	})
	return pools
}

// ErrNested means a pool directory would lie inside another pool's,
// contain one, or be one under another path: each pool would take the
// other's files for its own.
var ErrNested = errors.New("pools cannot nest")

// CheckNesting refuses dir if it is inside an open pool's directory or a
// directory some daemon served as a pool (see servedBefore: the registry
// may not list it), if it contains an open pool's directory, or if it is
// one under another path. dir itself may be a pool already. Paths are
// compared where their symlinks lead.
func (r *Registry) CheckNesting(dir string) error {
	at := resolved(dir)
	for _, p := range r.List() {
		other := p.Volumes.Dir()
		switch otherAt := resolved(other); {
		case within(at, otherAt):
			return fmt.Errorf("%w: %s is inside pool %s (%s)", ErrNested, dir, p.Name, other)
		case within(otherAt, at):
			return fmt.Errorf("%w: %s contains pool %s (%s)", ErrNested, dir, p.Name, other)
		case at == otherAt && dir != other:
			return fmt.Errorf("%w: %s is the directory of pool %s (%s)", ErrNested, dir, p.Name, other)
		}
	}
	for parent := filepath.Dir(at); parent != filepath.Dir(parent); parent = filepath.Dir(parent) {
		if servedBefore(parent) {
			return fmt.Errorf("%w: %s is inside the pool directory %s", ErrNested, dir, parent)
		}
	}
	return nil
}

// resolved is dir with the symlinks of its existing part resolved: where
// a pool at dir lies, or will once dir is made.
func resolved(dir string) string {
	tail := ""
	for {
		if target, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(target, tail)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join(dir, tail)
		}
		tail = filepath.Join(filepath.Base(dir), tail)
		dir = parent
	}
}

// within reports whether path lies strictly beneath dir.
func within(path, dir string) bool {
	return strings.HasPrefix(path, dir+"/") || (dir == "/" && path != "/")
}

// Close closes every pool.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, p := range r.pools {
		errs = append(errs, r.closeLocked(p))
	}
	errs = append(errs, r.saveKnownLocked())
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
	for _, top := range volume.TopDirs {
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
