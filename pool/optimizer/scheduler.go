// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/ioprio"
)

// SchedulerConfig tunes the scheduler.
type SchedulerConfig struct {
	Workers   int // jobs run at once; default 1
	ZstdLevel int // 0: the kernel's default level
	// PoolZstdLevels overrides ZstdLevel for the pools at these directories.
	PoolZstdLevels map[string]int
	IdleIO         bool // run jobs at idle I/O priority
	// MinCompressSaving is the share of its bytes (0 to 1) compression
	// must save for data to be stored compressed; 0 takes
	// DefaultMinCompressSaving.
	MinCompressSaving float64
	// IndexSizes sizes the pools' dedup indexes; an index file of another
	// size is converted as it opens.
	IndexSizes IndexSizes
	// Cold is when and how cold data is recompressed; off when not
	// Enabled.
	Cold ColdPolicy
	// OnIndexSized, which may be nil, is told the total bytes of the open
	// dedup indexes each time one is about to open, counting it at the
	// size it is to have: they are most of the daemon's memory. The zstd
	// encoders' tables count too: the jobs' for good, a cold pass's while
	// it runs (see coldEncoder); reports come as any of these changes.
	// Calls come one at a time; it must not use the scheduler.
	OnIndexSized func(total uint64)
}

// Scheduler runs optimizer jobs in the background, one volume at a time per
// worker, and lets a VM start take precedence: a start holds its volume's
// job at the next chunk without waiting for it.
type Scheduler struct {
	cfg    SchedulerConfig
	log    *slog.Logger
	onDone func(JobDone)

	mu      sync.Mutex
	queue   []jobKey
	running map[jobKey]*runningJob
	paused  map[string]bool // reasons
	wake    chan struct{}
	changed chan struct{} // closed and replaced on every state change
	pools   map[string]*Pool
	stats   Counters
	recent  []JobDone
	lastID  uint64 // the newest job id handed out
	// encoders are the jobs' encoders of compressed copies, by zstd level
	// and CPUs, kept across jobs, their tables counted in indexes (a cold
	// pass makes its own; see coldEncoder).
	encoders  map[encoderKey]*copyEncoder
	plainOnce sync.Once    // onPlain's log line
	indexes   indexAccount // every pool's dedup index, and the encoders' tables
	durable   durablePuts  // jobs being written by putDurable
	// owed are the pools, by directory, whose last jobs left measuring
	// the pool to a job that was to follow (see followed): a worker with
	// nothing to run does it (catchUp).
	owed map[string]bool
}

type jobKey struct{ dir, vid string }

type runningJob struct {
	id          uint64 // of the job that runs, which may have been merged into since
	cancel      context.CancelFunc
	done, total uint64
	held        bool
	cold        bool // a cold pass, which gives way to any other job
	ending      bool // past the point where it tells whether a job follows
}

// NewScheduler returns a scheduler; Run starts its workers. onDone may be
// nil.
func NewScheduler(cfg SchedulerConfig, log *slog.Logger, onDone func(JobDone)) *Scheduler {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if onDone == nil {
		onDone = func(JobDone) {}
	}
	return &Scheduler{
		cfg: cfg, log: log, onDone: onDone,
		running: map[jobKey]*runningJob{}, paused: map[string]bool{}, owed: map[string]bool{},
		wake: make(chan struct{}, 1), changed: make(chan struct{}), pools: map[string]*Pool{},
		indexes: indexAccount{sizes: cfg.IndexSizes, report: cfg.OnIndexSized},
	}
}

// Run works on jobs until ctx is done. A job cut short by ctx stays in its
// pool's state and resumes when the daemon next opens the pool.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx)
		}()
	}
	wg.Wait()
}

func (s *Scheduler) worker(ctx context.Context) {
	// The I/O priority belongs to the thread: keep this goroutine on one.
	runtime.LockOSThread()
	if s.cfg.IdleIO {
		if err := ioprio.SetIdle(); err != nil {
			s.log.Warn("cannot lower optimizer I/O priority", "err", err)
		}
	}
	// Data also turns cold with time alone: look again now and then.
	recheck := time.NewTicker(coldRecheck)
	defer recheck.Stop()
	for {
		key, p, job, ok := s.next()
		if !ok {
			s.catchUp()
			if s.queueCold() {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			case <-recheck.C:
			}
			continue
		}
		s.run(ctx, key, p, job)
	}
}

// next takes the oldest runnable job, unless paused; a cold pass only
// when no other job is runnable.
func (s *Scheduler) next() (jobKey, *Pool, Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.paused) > 0 {
		return jobKey{}, nil, Job{}, false
	}
	for _, cold := range []bool{false, true} {
		for i, key := range s.queue {
			if _, busy := s.running[key]; busy {
				continue // queued again while it runs: one job per volume at a time
			}
			p := s.pools[key.dir]
			job, ok := p.job(key.vid)
			if !ok || job.Held || job.Cold != cold {
				continue
			}
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.running[key] = &runningJob{id: job.ID, cold: job.Cold}
			s.notifyLocked()
			return key, p, job, true
		}
	}
	return jobKey{}, nil, Job{}, false
}

// run runs the job next took, a cold pass or another, with a context
// that hold and put may cancel. The job counts as running until its
// outcome is recorded and it has left the pool's state, so that put never
// merges into a job whose run is over.
func (s *Scheduler) run(ctx context.Context, key jobKey, p *Pool, job Job) {
	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	run := s.running[key]
	run.cancel = cancel
	s.mu.Unlock()
	defer s.release(key)
	if job.Cold {
		s.runCold(ctx, jobCtx, run, p, job)
	} else {
		s.runJob(ctx, jobCtx, run, key, p, job)
	}
}

func (s *Scheduler) runJob(ctx, jobCtx context.Context, run *runningJob, key jobKey, p *Pool, job Job) {
	began := time.Now()
	level, ok := s.cfg.PoolZstdLevels[key.dir]
	if !ok {
		level = s.cfg.ZstdLevel
	}
	r := newJobRun(p, job, level, s.encoderFor(encoderKey{level: level}), func(err error) {
		s.log.Info("kernel has no zstd levels in range defrag; using the mount's level", "err", err)
	})
	r.dedup = newDeduper(r)
	defer r.dedup.finish()
	res, err := r.execute(jobCtx, s.progress(jobCtx, run))

	held := s.account(run, res)
	// Before the job leaves the list: whoever waits for it, or for the
	// burst it ends, then reads a saved count that includes it.
	p.jobEnded(res.Saved(), ctx.Err() == nil, !s.followed(key))

	switch {
	case errors.Is(err, errHeld) || held:
		if p.holdIfRunning(job.VID) {
			s.log.Info("optimization held: volume started", "pool", p.Name, "vid", job.VID, "saved", res.Saved())
		} else {
			s.enqueue(p, job.VID) // stopped again meanwhile: carry on
		}
		return
	case ctx.Err() != nil:
		s.log.Info("optimization interrupted; resumes at next start", "pool", p.Name, "vid", job.VID)
		return
	}
	if err != nil {
		// Before the job leaves the state, so that no write of the
		// state has the job gone and the mark still followed.
		p.state.updateSoon(func(st *state) { unexamined(st, job.VID) })
	}
	done := s.recordOutcome(key, p, job, res, err)
	if err != nil {
		s.log.Error("optimization failed", "pool", p.Name, "vid", job.VID, "err", err)
	} else {
		p.examinedBelow(r.settled, job.VID, r.fullClean)
		p.rested(job.VID, r.settled)
		c := res.Counters
		// What a VM wrote compressed is hashed, not examined for compression.
		s.log.Info("optimized volume", "pool", p.Name, "vid", job.VID, "hashed", c.Get(CountDedupBytesHashed),
			"examined", c.Get(CountCompressBytesExamined), "compressed", c.Get(CountCompressBytesCompressed),
			"saved", res.Saved(), "skipped_shared", c.Get(CountCompressBytesSkippedShared),
			"ms", time.Since(began).Milliseconds(), r.phases.attr())
	}
	s.onDone(done)
}

// account adds a run's figures to the totals and tells whether a start
// held the run.
func (s *Scheduler) account(run *runningJob, res Result) (held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.merge(res.Counters)
	s.stats.v[CountJobBytesSaved] += res.Saved()
	s.notifyLocked()
	return run.held
}

// followed reports whether another job of key's pool is to end after
// key's: one queued and runnable, or running and not yet this far. Then
// that job measures the pool for both, so that the jobs of VMs stopped
// together pay for it once; else key's does.
func (s *Scheduler) followed(key jobKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running[key].ending = true
	if s.activeLocked(key.dir) {
		s.owed[key.dir] = true
		return true
	}
	delete(s.owed, key.dir)
	return false
}

// activeLocked reports whether a job of the pool at dir is to end later:
// queued and runnable, or running and not yet past followed.
func (s *Scheduler) activeLocked(dir string) bool {
	for key, run := range s.running {
		if key.dir == dir && !run.ending {
			return true
		}
	}
	if len(s.paused) > 0 {
		return false
	}
	for _, key := range s.queue {
		if key.dir != dir {
			continue
		}
		if job, ok := s.pools[dir].job(key.vid); ok && !job.Held {
			return true
		}
	}
	return false
}

// catchUp does what the last jobs of a pool left to one that did not run
// after all (held by a start, or paused): it measures the pool.
func (s *Scheduler) catchUp() {
	var pools []*Pool
	s.mu.Lock()
	for dir := range s.owed {
		if !s.activeLocked(dir) {
			delete(s.owed, dir)
			if p := s.pools[dir]; p != nil {
				pools = append(pools, p)
			}
		}
	}
	s.mu.Unlock()
	for _, p := range pools {
		p.jobEnded(0, true, true)
	}
}

// recordOutcome counts a finished job, keeps its outcome among the recent
// ones and drops it from the pool's jobs, in that order: whoever sees it
// gone (jobs --wait, optimize) also sees how it ended.
func (s *Scheduler) recordOutcome(key jobKey, p *Pool, job Job, res Result, err error) JobDone {
	done := JobDone{ID: job.ID, Pool: p.Name, Dir: key.dir, VID: job.VID, Cold: job.Cold, Finished: time.Now().UTC(),
		Result: res, Err: err}
	s.mu.Lock()
	if err != nil {
		s.stats.add(CountJobFailed, 1)
	} else {
		s.stats.add(CountJobDone, 1)
	}
	s.recent = append(s.recent, done)
	if len(s.recent) > recentJobs {
		s.recent = s.recent[1:]
	}
	s.mu.Unlock()
	p.finishJob(job)
	return done
}

// encoderKey tells encoders apart: a zstd level, and the CPUs used at
// once (0: all).
type encoderKey struct{ level, parallel int }

// encoderFor returns the copies' encoder for key, made on first use.
func (s *Scheduler) encoderFor(key encoderKey) *copyEncoder {
	s.mu.Lock()
	defer s.mu.Unlock()
	if enc := s.encoders[key]; enc != nil {
		return enc
	}
	enc := newCopyEncoder(key.level, s.cfg.MinCompressSaving, key.parallel, s.onPlain)
	s.indexes.hold(enc.tableBytes()) // for good: the encoder is kept
	if s.encoders == nil {
		s.encoders = map[encoderKey]*copyEncoder{}
	}
	s.encoders[key] = enc
	return enc
}

// onPlain tells, once, that the kernel takes no encoded writes.
func (s *Scheduler) onPlain(err error) {
	s.plainOnce.Do(func() {
		s.log.Info("kernel takes no encoded writes; compressed copies are left to btrfs to compress", "err", err)
	})
}

// progress is a run's progress report: it records how far the run got
// and, between chunks, waits while jobs are paused.
func (s *Scheduler) progress(ctx context.Context, run *runningJob) func(done, total uint64) {
	return func(done, total uint64) {
		s.mu.Lock()
		run.done, run.total = done, total
		s.mu.Unlock()
		s.waitWhilePaused(ctx)
	}
}

// waitWhilePaused blocks between chunks while jobs are paused.
func (s *Scheduler) waitWhilePaused(ctx context.Context) {
	for {
		s.mu.Lock()
		paused, changed := len(s.paused) > 0, s.changed
		s.mu.Unlock()
		if !paused {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// enqueue makes the pool's job for vid runnable.
func (s *Scheduler) enqueue(p *Pool, vid string) {
	key := jobKey{p.Volumes.Dir(), vid}
	s.mu.Lock()
	s.pools[key.dir] = p
	queued := false
	for _, k := range s.queue {
		queued = queued || k == key
	}
	if !queued {
		s.queue = append(s.queue, key)
	}
	s.notifyLocked()
	s.mu.Unlock()
	s.wakeWorker()
}

// put records job in p's state, merged into the volume's pending job
// (see putJob), and makes it runnable. It returns the id of the job that
// covers it. The job is written with the next batch (see updateSoon): for
// jobs a crash may lose at the cost of the work alone; putDurable writes
// the others before it returns.
func (s *Scheduler) put(p *Pool, job Job) uint64 {
	var id uint64
	s.mu.Lock()
	p.state.updateSoon(s.jobChangeLocked(p, job, nil, &id))
	if !job.Cold {
		s.cancelColdLocked("")
	}
	s.mu.Unlock()
	s.enqueue(p, job.VID)
	return id
}

// jobChangeLocked returns the change that records job in a pool's state,
// merged into the volume's pending job, after prepare, if given, has set
// it up against the state; the change sets id to the job that covers it.
// s.mu must stay held until the change is made, so that no job starts or
// ends between the look at s.running and the merge.
func (s *Scheduler) jobChangeLocked(p *Pool, job Job, prepare func(*state, *Job), id *uint64) func(*state) {
	_, running := s.running[jobKey{p.Volumes.Dir(), job.VID}]
	s.lastID++
	job.ID = s.lastID
	return func(st *state) {
		if prepare != nil {
			prepare(st, &job)
		}
		st.Jobs, *id = putJob(st.Jobs, job, running)
	}
}

// resume makes the jobs a pool left unfinished runnable, and hands out
// new ids above theirs. A held job whose volume stopped meanwhile runs
// too: its commit may have come while the daemon was down.
func (s *Scheduler) resume(p *Pool, jobs []Job) {
	s.mu.Lock()
	s.pools[p.Volumes.Dir()] = p
	for _, job := range jobs {
		s.lastID = max(s.lastID, job.ID)
	}
	s.mu.Unlock()
	for _, job := range jobs {
		if job.Held && p.holdIfRunning(job.VID) {
			continue
		}
		if job.Held {
			p.unholdJob(job.VID)
		}
		s.enqueue(p, job.VID)
	}
}

// release ends key's run and lets a worker take the job queued for it
// meanwhile.
func (s *Scheduler) release(key jobKey) {
	s.mu.Lock()
	delete(s.running, key)
	s.notifyLocked()
	s.mu.Unlock()
	s.wakeWorker()
}

func (s *Scheduler) wakeWorker() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// hold stops vid's running job at its next chunk; it is called by a start,
// before it waits for the volume's lock and again with it held, so it
// must not wait.
func (s *Scheduler) hold(p *Pool, vid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if run, ok := s.running[jobKey{p.Volumes.Dir(), vid}]; ok {
		run.held = true
		if run.cancel != nil {
			run.cancel()
		}
	}
	// A cold pass deduplicates into every volume of its pool.
	s.cancelColdLocked(p.Volumes.Dir())
}

// Pause stops starting new chunks until every reason is resumed.
func (s *Scheduler) Pause(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.paused[reason] {
		s.log.Info("optimizer paused", "reason", reason)
	}
	s.paused[reason] = true
	s.notifyLocked()
}

// Resume drops a pause reason.
func (s *Scheduler) Resume(reason string) {
	s.mu.Lock()
	if s.paused[reason] {
		s.log.Info("optimizer resumed", "reason", reason)
	}
	delete(s.paused, reason)
	s.notifyLocked()
	s.mu.Unlock()
	s.wakeWorker()
}

func (s *Scheduler) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// forget drops a pool that closed, with its queued jobs, which stay in
// its state for the next open.
func (s *Scheduler) forget(p *Pool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := p.Volumes.Dir()
	if s.pools[dir] != p {
		return
	}
	delete(s.pools, dir)
	delete(s.owed, dir) // Close writes the index and saved bytes back
	s.queue = slices.DeleteFunc(s.queue, func(k jobKey) bool { return k.dir == dir })
	s.notifyLocked()
}

// whileIdle runs fn if no job of p is queued or running, before any can
// start, and reports whether it did.
func (s *Scheduler) whileIdle(p *Pool, fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busyLocked(p.Volumes.Dir()) {
		return false
	}
	fn()
	return true
}

// idle reports whether no job of p runs or is to run now: a job held by
// its volume's start, or paused, does not count.
func (s *Scheduler) idle(p *Pool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.activeLocked(p.Volumes.Dir())
}

// busyLocked reports whether a job of the pool at dir is queued or
// running, held or not.
func (s *Scheduler) busyLocked(dir string) bool {
	for key := range s.running {
		if key.dir == dir {
			return true
		}
	}
	return slices.ContainsFunc(s.queue, func(key jobKey) bool { return key.dir == dir })
}
