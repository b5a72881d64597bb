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
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
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
	commits atomic.Uint64 // mirrors state.Commits, read without a copy of the state
	log     *slog.Logger
	state   *stateStore
	// dir is the pool directory and stateDir its StateDir, through which
	// every file the pool opens by name is opened.
	dir, stateDir *fsroot.Root
	sched         *Scheduler // nil: commits are not optimised
	index         poolIndex
	usage         *usageKeeper
	// id is the directory's device and inode when opened: a directory
	// made at the same path since is another pool.
	id knownPool
}

// Commits counts the commits that landed in this pool.
func (p *Pool) Commits() uint64 { return p.commits.Load() }

// Saved is the disk space the pool's optimizer jobs freed, net, as
// UsageFile keeps it across restarts.
func (p *Pool) Saved() uint64 { return uint64(max(p.usage.savedBytes(), 0)) }

// Usage reports the filesystem's size and used bytes, as file-reflink does.
func (p *Pool) Usage() (size, used int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p.Volumes.Dir(), &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", p.Volumes.Dir(), err)
	}
	return int64(st.Frsize) * int64(st.Blocks), int64(st.Frsize) * int64(st.Blocks-st.Bfree), nil
}

// started is the volume store's start hook: it records the filesystem
// generation, from which the VM's writes will be told from old data, and
// holds the volume's optimiser job, whose extents the VM now shares.
func (p *Pool) started(st volume.Started) {
	gen, err := p.generationOf(st.Dirty)
	err = errors.Join(err, p.state.update(func(s *state) {
		if _, known := s.Started[st.VID]; !(st.Reused && known) && gen != 0 {
			s.Started[st.VID] = gen
		}
		for i := range s.Jobs {
			if s.Jobs[i].VID == st.VID {
				s.Jobs[i].Held = true
			}
		}
	}))
	if err != nil {
		// Only optimisation is at stake: the next commit falls back to
		// comparing with the newest revision.
		p.log.Warn("cannot record start generation", "vid", st.VID, "err", err)
	}
	if p.sched != nil {
		p.sched.hold(p, st.VID)
	}
}

// committed is the volume store's commit hook: it queues optimisation of
// what the VM wrote and asks the store to leave the precache to the job.
func (p *Pool) committed(c volume.Committed) bool {
	p.commits.Add(1)
	if p.sched == nil {
		p.state.updateSoon(func(s *state) { s.Commits++ })
		p.usage.refreshLater() // no job follows to measure the pool
		return false
	}
	job := Job{VID: c.VID, Precache: c.Precache, Queued: time.Now().UTC()}
	// Written before the commit's reply: the job alone will make the
	// precache, so it must survive a crash.
	_, err := p.sched.put(p, job, true, func(s *state, job *Job) {
		s.Commits++
		if gen, ok := s.Started[c.VID]; ok {
			job.Since = gen
		} else {
			job.DiffRevision = true
		}
		delete(s.Started, c.VID)
	})
	if err != nil {
		p.state.updateSoon(func(s *state) { s.Commits++ })
		p.log.Warn("cannot queue optimization", "vid", c.VID, "err", err)
		return false
	}
	p.log.Debug("queued optimization", "pool", p.Name, "vid", c.VID, "since", job.Since)
	return true
}

// putJob adds job, merging it into a pending job of the same volume, and
// returns the id of the job that will cover it. A merged job keeps the
// pending job's id, since one run covers both, unless the pending job is
// running: then what was merged runs after it, under job's id.
func putJob(jobs []Job, job Job, running bool) ([]Job, uint64) {
	for i := range jobs {
		if jobs[i].VID == job.VID {
			id := jobs[i].ID
			if running || id == 0 {
				id = job.ID
			}
			jobs[i] = jobs[i].merge(job)
			jobs[i].ID = id
			return jobs, id
		}
	}
	return append(jobs, job), job.ID
}

// ErrNotOptimizable means a volume has nothing a job could work on now.
var ErrNotOptimizable = errors.New("nothing to optimize")

// Optimise queues a pass over the volume vid, of every uncompressed extent
// when full, including those shared with its revisions. It returns the id
// of the job whose outcome will report the pass. The job is written
// lazily: a crash loses only the request, which the administrator sees.
func (p *Pool) Optimise(vid string, full bool) (uint64, error) {
	if p.sched == nil {
		return 0, errors.New("optimization is disabled")
	}
	if err := p.optimizable(vid); err != nil {
		return 0, err
	}
	return p.sched.put(p, Job{VID: vid, Full: full, Queued: time.Now().UTC()}, false, nil)
}

// optimizable refuses a volume whose job could only wait: one that runs
// (its extents are the VM's; its commit queues a job) or that has no
// committed image (volatile and snapshot volumes), which no commit would
// ever release.
func (p *Pool) optimizable(vid string) error {
	running, err := p.Volumes.Running(vid)
	if err != nil {
		return err
	}
	if running {
		return fmt.Errorf("%w: %s is running; its next commit queues its optimization", ErrNotOptimizable, vid)
	}
	paths, err := volume.PathsFor(vid)
	if err != nil {
		return err
	}
	files, err := p.Volumes.Files(vid)
	if err != nil {
		return err
	}
	if !slices.Contains(files, p.Volumes.Path(paths.Clean)) {
		return fmt.Errorf("%w: %s has no committed image", ErrNotOptimizable, vid)
	}
	return nil
}

func (p *Pool) job(vid string) (Job, bool) {
	for _, j := range p.state.read().Jobs {
		if j.VID == vid {
			return j, true
		}
	}
	return Job{}, false
}

func (p *Pool) jobs() []Job { return p.state.read().Jobs }

// holdIfRunning holds vid's job if the volume is running, deciding under
// the volume's lock so that a commit cannot slip in between and be
// forgotten. It reports whether the job waits: held, or dropped because
// the volume runs without a recorded origin start, so no commit would
// ever release it (a volatile or snapshot volume).
func (p *Pool) holdIfRunning(vid string) bool {
	held := false
	err := p.Volumes.Locked(vid, "hold", func(l *volume.Locked) error {
		running, err := l.Running()
		if err != nil || !running {
			return err
		}
		held = true
		if _, origin := p.state.read().Started[vid]; origin {
			p.holdJob(vid)
			return nil
		}
		p.log.Info("dropped optimization of a running volume no commit will follow", "pool", p.Name, "vid", vid)
		p.dropJob(vid)
		return nil
	})
	if err != nil {
		p.log.Warn("cannot tell whether the volume runs", "vid", vid, "err", err)
	}
	return held
}

func (p *Pool) holdJob(vid string) {
	if job, ok := p.job(vid); !ok || job.Held {
		return // nothing to write
	}
	p.updateJobsSoon(func(jobs []Job) []Job {
		for i := range jobs {
			if jobs[i].VID == vid {
				jobs[i].Held = true
			}
		}
		return jobs
	})
}

func (p *Pool) unholdJob(vid string) {
	p.updateJobsSoon(func(jobs []Job) []Job {
		for i := range jobs {
			if jobs[i].VID == vid {
				jobs[i].Held = false
			}
		}
		return jobs
	})
}

func (p *Pool) dropJob(vid string) {
	p.updateJobsSoon(func(jobs []Job) []Job {
		return slices.DeleteFunc(jobs, func(j Job) bool { return j.VID == vid })
	})
}

// finishJob drops job once it has run, unless a request merged into it
// while it ran (an optimize, an import's commit): that one is queued
// again and must run too. A crash before the write only runs the job
// again.
func (p *Pool) finishJob(job Job) {
	p.updateJobsSoon(func(jobs []Job) []Job {
		return slices.DeleteFunc(jobs, func(j Job) bool { return j == job })
	})
}

func (p *Pool) updateJobsSoon(fn func([]Job) []Job) {
	p.state.updateSoon(func(s *state) { s.Jobs = fn(s.Jobs) })
}

// tmpDir holds compressed copies while they are deduplicated into images:
// files made with O_TMPFILE, which never have a name.
func (p *Pool) tmpDir() *fsroot.Root { return p.stateDir }

// oldTmpDir is where compressed copies were named before they were made
// with O_TMPFILE, beneath StateDir.
const oldTmpDir = "tmp"

// generationOf opens path without following a symlink: a dirty image
// planted as one must not lead the daemon outside the pool.
func (p *Pool) generationOf(path string) (uint64, error) {
	f, err := p.openFile(path, os.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return btrfs.Generation(f)
}

// openFile opens path, a file of the pool, beneath the pool directory and
// without following a symlink anywhere along it.
func (p *Pool) openFile(path string, flag int) (*os.File, error) {
	rel, err := filepath.Rel(p.dir.Name(), path)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, &fs.PathError{Op: "open", Path: path, Err: errors.New("not beneath the pool")}
	}
	return p.dir.OpenFile(rel, flag|unix.O_NOFOLLOW, 0)
}

// statFile describes path, a file of the pool, itself (a symlink is not
// followed), looked up beneath the pool directory.
func (p *Pool) statFile(path string) (fs.FileInfo, error) {
	f, err := p.openFile(path, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// openDir opens the pool directory, for the ioctls that take any file of
// its filesystem.
func (p *Pool) openDir() (*os.File, error) {
	return p.dir.OpenFile(".", os.O_RDONLY|unix.O_DIRECTORY, 0)
}

// Registry opens each pool directory once and keeps it open.
type Registry struct {
	log   *slog.Logger
	mu    sync.Mutex
	pools map[string]*Pool // by directory
	// writing is passed to every store as volume.Hooks.Writing.
	writing func(op, vid string) (done func())
	sched   *Scheduler
	indexes indexAccount // of every pool's dedup index
	// stateDir holds knownFile; "" keeps nothing across restarts.
	stateDir   string
	remembered knownState
	saveSoon   *time.Timer // set while known waits to be written
}

// NewRegistry returns an empty registry. writing, which may be nil, is
// told when each file-changing volume operation begins and ends.
func NewRegistry(log *slog.Logger, writing func(op, vid string) (done func())) *Registry {
	return &Registry{log: log, pools: map[string]*Pool{}, writing: writing}
}

// SetScheduler makes every pool opened from now on optimise its commits
// with sched.
func (r *Registry) SetScheduler(sched *Scheduler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sched = sched
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

// openLocked opens the pool at dir, which no open pool has.
func (r *Registry) openLocked(name, dir string) (*Pool, error) {
	if _, _, err := identify(dir); err != nil {
		return nil, fmt.Errorf("pool %s: %w", dir, err)
	}
	p, err := r.openPool(name, dir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", dir, err)
	}
	// The directory opened, whatever stood at dir when identify looked.
	dev, ino := p.dir.ID()
	p.id = knownPool{Name: name, Dir: dir, Dev: dev, Ino: ino}
	p.state.lazy.failed = func(err error) { r.log.Warn("cannot save pool state", "pool", name, "err", err) }
	p.commits.Store(p.state.read().Commits)
	// Compressed copies named by an older daemon that died in a job are of
	// no use (the job starts over on what is still uncompressed) and only
	// take space.
	if err := p.stateDir.RemoveAll(oldTmpDir); err != nil {
		r.log.Warn("cannot remove leftover compressed copies", "pool", name, "err", err)
	}
	r.pools[dir] = p
	r.log.Info("opened pool", "pool", name, "dir", dir)
	p.usage.refreshLater()
	if p.sched != nil {
		p.sched.resume(p, p.jobs()) // unfinished before a restart
	}
	return p, nil
}

// openPool opens the pool directory, its state and its volumes.
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
	fail := func(err error) (*Pool, error) {
		root.Close()
		stateDir.Close()
		return nil, err
	}
	st, err := openState(stateDir, r.log)
	if err != nil {
		return fail(err)
	}
	p := &Pool{Name: name, log: r.log, state: st, dir: root, stateDir: stateDir, sched: r.sched}
	p.index.account = &r.indexes
	p.Volumes, err = volume.Open(dir, r.log, volume.Hooks{Started: p.started, Committed: p.committed, Removed: p.removed, Writing: r.writing})
	if err != nil {
		return fail(err)
	}
	if p.usage, err = openUsageKeeper(dir, r.log, r.sched != nil && r.sched.cfg.IdleIO); err != nil {
		return fail(errors.Join(err, p.Volumes.Close()))
	}
	return p, nil
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

// ErrNested means a pool directory would lie inside another pool's, or
// contain one: each pool would take the other's files for its own.
var ErrNested = errors.New("pools cannot nest")

// CheckNesting refuses dir if it is inside an open pool's directory or a
// directory some daemon served as a pool (see servedBefore: the registry
// may not list it), or if it contains an open pool's directory. dir
// itself may be a pool already.
func (r *Registry) CheckNesting(dir string) error {
	for _, p := range r.List() {
		other := p.Volumes.Dir()
		switch {
		case within(dir, other):
			return fmt.Errorf("%w: %s is inside pool %s (%s)", ErrNested, dir, p.Name, other)
		case within(other, dir):
			return fmt.Errorf("%w: %s contains pool %s (%s)", ErrNested, dir, p.Name, other)
		}
	}
	for parent := filepath.Dir(dir); parent != filepath.Dir(parent); parent = filepath.Dir(parent) {
		if servedBefore(parent) {
			return fmt.Errorf("%w: %s is inside the pool directory %s", ErrNested, dir, parent)
		}
	}
	return nil
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
