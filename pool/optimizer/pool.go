// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// Pool is the optimizer's side of one pool: the jobs of its volumes and
// the state they keep in its StateDir, its dedup index and its usage
// figures.
type Pool struct {
	Name    string
	Volumes *volume.Store
	commits atomic.Uint64 // mirrors state.Commits, read without a copy of the state
	log     *slog.Logger
	state   *stateStore
	// dir is the pool directory and stateDir its StateDir, through which
	// every file the pool opens by name is opened.
	dir, stateDir *fsroot.Root
	sched         *Scheduler // nil: commits are not optimized
	index         poolIndex
	usage         *usageKeeper
	lastCommit    commitClock // the last commit a job made
}

// PoolConfig is what the registry hands the optimizer of a pool it opens.
type PoolConfig struct {
	Name string
	// Dir and StateDir are the pool directory and its StateDir; the
	// registry opened them and closes them after Pool.Close.
	Dir, StateDir *fsroot.Root
	Log           *slog.Logger
	// Writing is passed to the volume store as volume.Hooks.Writing.
	Writing func(op, vid string) (done func())
}

// oldTmpDir is where compressed copies were named before they were made
// with O_TMPFILE, beneath StateDir.
const oldTmpDir = "tmp"

// OpenPool opens the pool's volume store, whose start, commit and remove
// hooks lead to the optimizer, and the state its jobs keep; its pending
// jobs are queued again. sched may be nil: commits are then counted and
// never optimized.
func OpenPool(sched *Scheduler, cfg PoolConfig) (*Pool, error) {
	st, err := openState(cfg.StateDir, cfg.Log)
	if err != nil {
		return nil, err
	}
	st.lazy.failed = func(err error) { cfg.Log.Warn("cannot save pool state", "pool", cfg.Name, "err", err) }
	p := &Pool{Name: cfg.Name, log: cfg.Log, state: st, dir: cfg.Dir, stateDir: cfg.StateDir, sched: sched}
	p.index.account = &indexAccount{} // of this pool alone, without a scheduler
	if sched != nil {
		p.index.account = &sched.indexes
	}
	hooks := volume.Hooks{Starting: p.starting, Started: p.started, Committed: p.committed, Removed: p.removed,
		Reverted: p.reverted, Writing: cfg.Writing}
	if p.Volumes, err = volume.Open(cfg.Dir.Name(), cfg.Log, hooks); err != nil {
		return nil, err
	}
	if p.usage, err = openUsageKeeper(cfg.Dir.Name(), cfg.Log, sched != nil && sched.cfg.IdleIO); err != nil {
		return nil, errors.Join(err, p.Volumes.Close())
	}
	p.commits.Store(p.state.read().Commits)
	p.removeLeftovers()
	p.usage.refreshLater()
	if sched != nil {
		sched.resume(p, p.jobs()) // unfinished before a restart
	}
	return p, nil
}

// removeLeftovers removes what a daemon that died left in StateDir: the
// temp files of writes it did not finish (a state or usage file, "name~"),
// which the next write of the same file would replace only later, in the
// background, and compressed copies named by an older daemon, of no use
// (the job starts over on what is still uncompressed).
func (p *Pool) removeLeftovers() {
	err := p.stateDir.RemoveAll(oldTmpDir)
	dir, openErr := p.stateDir.Open(".")
	if openErr == nil {
		var names []string
		names, openErr = dir.Readdirnames(-1)
		dir.Close()
		for _, name := range names {
			if strings.HasSuffix(name, "~") {
				err = errors.Join(err, p.stateDir.Remove(name))
			}
		}
	}
	if err = errors.Join(err, openErr); err != nil {
		p.log.Warn("cannot remove what an interrupted write left in the state directory", "pool", p.Name, "err", err)
	}
}

// Close stops serving the pool's jobs, which stay in its state for the
// next open, and closes its state, index, usage figures and volumes.
func (p *Pool) Close() error {
	if p.sched != nil {
		p.sched.forget(p)
	}
	return errors.Join(p.state.flush(), p.closeIndex(), p.usage.close(), p.Volumes.Close())
}

// ReleaseIfIdle writes the pool's dedup index back when no job of the
// pool runs or is to run (held ones aside); and when none is queued
// either, lets go of the index's file and releases the descriptors its
// volumes and usage figures hold, and reports whether it did. Each opens
// again when next used. The daemon calls it every few seconds, so the
// index is written back within seconds of the jobs' end rather than at
// it: on a large index the write and its sync take a tenth of a second,
// which each job that ended a burst paid before its outcome was known.
func (p *Pool) ReleaseIfIdle() bool {
	if p.sched != nil {
		// Written back before the scheduler's lock is taken, which commits
		// wait for; a job starting meanwhile waits for the index instead.
		if p.sched.idle(p) {
			if err := p.flushIndex(); err != nil {
				p.log.Warn("cannot write dedup index back", "pool", p.Name, "err", err)
			}
		}
		if !p.sched.whileIdle(p, p.closeIdleIndex) {
			return false
		}
	}
	if err := errors.Join(p.Volumes.Release(), p.usage.release()); err != nil {
		p.log.Warn("cannot release pool directory", "pool", p.Name, "err", err)
	}
	return true
}

// closeIdleIndex lets go of the dedup index's file (releaseIdleIndex);
// the next job takes it up again.
func (p *Pool) closeIdleIndex() {
	if err := p.releaseIdleIndex(); err != nil {
		p.log.Warn("cannot release idle dedup index", "pool", p.Name, "err", err)
	}
}

// Commits counts the commits that landed in this pool.
func (p *Pool) Commits() uint64 { return p.commits.Load() }

// Saved is the disk space the pool's optimizer jobs freed, net, as
// UsageFile keeps it across restarts.
func (p *Pool) Saved() uint64 { return uint64(max(p.usage.savedBytes(), 0)) }

// starting is the volume store's hook for a start that is about to wait
// for the volume's lock: the volume's running job stops before its next
// chunk instead of taking the lock again ahead of the start. A start that
// then fails leaves the volume stopped, and the job carries on.
func (p *Pool) starting(vid string) {
	if p.sched != nil {
		p.sched.hold(p, vid)
	}
}

// started is the volume store's start hook: it records the filesystem
// generation, from which the VM's writes will be told from old data, and
// holds the volume's optimizer job, whose extents the VM now shares. A
// reused dirty image keeps the generation of the start that made it; if
// none is known (another driver made it, or a crash lost the record),
// none is recorded, as the VM wrote before this start too: the commit
// compares with the newest revision instead.
//
// So a record a crash loses costs nothing but that comparison, and a held
// job a crash forgets is held again as it meets the running volume: both
// are written with the next batch, and the start does not wait for the
// state's fsync behind the optimizer's I/O.
func (p *Pool) started(st volume.Started) {
	gen, dirty, err := p.fileIDs(st.Dirty)
	if err != nil {
		// Only optimization is at stake, as above.
		p.log.Warn("cannot record start generation", "vid", st.VID, "err", err)
	}
	// An inode that cannot be read is 0, which no mark follows.
	clean, _ := p.inodeOf(st.Clean)
	p.state.updateSoon(func(s *state) {
		if !st.Reused && gen != 0 {
			s.Started[st.VID] = gen
		}
		examinedStarted(s, st, clean, dirty)
		for i := range s.Jobs {
			if s.Jobs[i].VID == st.VID {
				s.Jobs[i].Held = true
			}
		}
	})
	if p.sched != nil {
		p.sched.hold(p, st.VID)
	}
}

// committed is the volume store's commit hook: it queues optimization of
// what the VM wrote and asks the store to leave the precache to the job.
func (p *Pool) committed(c volume.Committed) bool {
	p.commits.Add(1)
	if p.sched == nil {
		p.committedWithoutJob(c)
		p.usage.refreshLater() // no job follows to measure the pool
		return false
	}
	clean, _ := p.inodeOf(c.Clean) // 0, unread: no mark follows it
	job := Job{VID: c.VID, Precache: c.Precache, Queued: time.Now().UTC()}
	// Written before the commit's reply: the job alone will make the
	// precache, so it must survive a crash.
	_, err := p.sched.putDurable(p, job, func(s *state, job *Job) {
		s.Commits++
		examinedCommitted(s, c, clean)
		if gen, ok := s.Started[c.VID]; ok {
			job.Since = gen
		} else {
			job.DiffRevision = true
		}
		delete(s.Started, c.VID)
	})
	if err != nil {
		p.committedWithoutJob(c)
		p.log.Warn("cannot queue optimization", "vid", c.VID, "err", err)
		return false
	}
	p.log.Debug("queued optimization", "pool", p.Name, "vid", c.VID, "since", job.Since)
	return true
}

// committedWithoutJob counts commit c, for which no job is queued (the
// daemon runs no optimizer, or the job could not be saved): as after a
// start the mark did not follow, what the VM wrote is left to a full
// pass, and an import drops the mark.
func (p *Pool) committedWithoutJob(c volume.Committed) {
	p.state.updateSoon(func(s *state) {
		s.Commits++
		examinedCommitted(s, c, 0)
	})
}

// putJob adds job, merging it into a pending job of the same volume, and
// returns the id of the job that will cover it. A merged job keeps the
// pending job's id, since one run covers both, unless the pending job is
// running: then what was merged runs after it, under job's id.
// A cold pass gives way: it is never merged into a job, and a job
// replaces a pending cold pass, which is judged again once all is idle.
func putJob(jobs []Job, job Job, running bool) ([]Job, uint64) {
	for i := range jobs {
		if jobs[i].VID == job.VID {
			switch {
			case job.Cold:
				return jobs, jobs[i].ID
			case jobs[i].Cold:
				jobs[i] = job
				return jobs, job.ID
			}
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

// Optimize queues a pass over the volume vid, of every uncompressed extent
// when full, including those shared with its revisions. It returns the id
// of the job whose outcome will report the pass. The job is written
// lazily: a crash loses only the request, which the administrator sees.
func (p *Pool) Optimize(vid string, full bool) (uint64, error) {
	if p.sched == nil {
		return 0, errors.New("optimization is disabled")
	}
	if err := p.optimizable(vid); err != nil {
		return 0, err
	}
	return p.sched.put(p, Job{VID: vid, Full: full, Queued: time.Now().UTC()}), nil
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
	files, err := p.Volumes.Files(vid)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(files, func(f volume.File) bool { return f.Kind() == volume.CleanFile }) {
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
	err := p.Volumes.ReadLocked(vid, func(l *volume.Locked) error {
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
		// What the job was to examine stays in the image, which the
		// examined mark must not pass over should the image stay. Before
		// the drop, so that no write of the state has one without the
		// other.
		p.state.updateSoon(func(s *state) { unexamined(s, vid) })
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

// jobEnded takes in the disk space a job saved and, when last (no other
// job of the pool is to end after it), has the pool measured, unless
// measure is false (the daemon is stopping). Jobs that are not last leave
// it to the one that is: after VMs stopped together, the pool is measured
// once. The dedup index is written back once the pool is idle
// (ReleaseIfIdle).
func (p *Pool) jobEnded(saved int64, measure, last bool) {
	if !last {
		p.usage.addSaved(saved)
		return
	}
	p.usage.jobRan(saved, measure)
}

// tmpDir holds compressed copies while they are deduplicated into images:
// files made with O_TMPFILE, which never have a name.
func (p *Pool) tmpDir() *fsroot.Root { return p.stateDir }

// fileIDs reads the generation and inode number of a file of the pool,
// opened beneath the pool directory: a dirty image planted as a symlink
// must not lead the daemon outside the pool.
func (p *Pool) fileIDs(file volume.File) (gen, ino uint64, err error) {
	f, err := p.Volumes.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if gen, err = btrfs.Generation(f); err != nil {
		return 0, 0, err
	}
	ino, err = compress.InodeOf(f)
	return gen, ino, err
}

// inodeOf reads the inode number of a file of the pool, looked up
// beneath the pool directory without opening it: anything but a regular
// file, such as a planted symlink, is refused.
func (p *Pool) inodeOf(file volume.File) (uint64, error) {
	info, err := p.Volumes.Stat(file)
	if err != nil {
		return 0, err
	}
	if !info.Mode().IsRegular() {
		return 0, fmt.Errorf("inode of %s: not a regular file", p.Volumes.Path(file))
	}
	return info.Sys().(*syscall.Stat_t).Ino, nil
}

// openDir opens the pool directory, for the ioctls that take any file of
// its filesystem.
func (p *Pool) openDir() (*os.File, error) {
	return p.dir.OpenFile(".", os.O_RDONLY|unix.O_DIRECTORY, 0)
}
