// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/fsroot"
	"github.com/btrfs-vdo/btrfs-vdo/internal/ioprio"
	"github.com/btrfs-vdo/btrfs-vdo/internal/usage"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// UsageFile is the pool's space figures beneath dir_path, which the
// driver reads for qvm-pool info: qubesd asks for them on its event loop,
// where a round trip to the daemon could stall every other request.
var UsageFile = path.Join(volume.StateDir, "usage.json")

// usageFileVersion changes when the file's meaning does.
const usageFileVersion = 1

// usageFileMax bounds what is read back of the file; it holds a few
// numbers.
const usageFileMax = 4096

// UsageRecord is the content of UsageFile. The sizes are those compsize
// prints for the pool's files, measured at Time; Saved is kept across
// restarts and counts from the pool's first job.
type UsageRecord struct {
	Version int    `json:"version"`
	DirPath string `json:"dir_path"`
	// Time is when the files were measured, in seconds since the epoch.
	Time         int64  `json:"time"`
	DiskUsage    uint64 `json:"disk_usage"`
	Uncompressed uint64 `json:"uncompressed"`
	Referenced   uint64 `json:"referenced"`
	// Saved is the disk space the pool's jobs freed, net: the sum of
	// every job's Result.Saved.
	Saved int64 `json:"saved"`
}

// usageKeeper keeps a pool's UsageFile current: the saved bytes as each
// job, or the last of jobs queued together (Pool.jobEnded), ends; the
// measured figures in the background, soon after, at pool open and after
// removals.
type usageKeeper struct {
	root   *fsroot.Root
	log    *slog.Logger
	idleIO bool // measure at idle I/O priority in the background

	// measuring serializes measurements, which take no mu: a job that
	// ends meanwhile writes its saved bytes without waiting. close waits
	// for a measurement under way.
	measuring sync.Mutex
	// mu serializes writing the file and guards the fields below.
	mu       sync.Mutex
	saved    atomic.Int64 // also added to without mu (addSaved)
	last     UsageRecord
	closed   bool
	measured time.Time     // when the last measurement began
	took     time.Duration // how long the one before it took, once done

	pending      atomic.Bool   // a background refresh is on its way
	unwritten    atomic.Bool   // saved has changed since the file was written
	measurements atomic.Uint64 // done and their figures written, for tests
	writes       atomic.Uint64 // of the file, for tests
}

// openUsageKeeper reads back the saved bytes UsageFile counted so far. A
// missing or unreadable file starts the count over.
func openUsageKeeper(dir string, log *slog.Logger, idleIO bool) (*usageKeeper, error) {
	root, err := fsroot.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", dir, err)
	}
	u := &usageKeeper{root: root, log: log, idleIO: idleIO}
	rec, err := readUsageFile(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		log.Warn("cannot read the pool's usage figures; counting saved bytes from 0", "dir", dir, "err", err)
	default:
		u.saved.Store(rec.Saved)
		u.last = rec
	}
	return u, nil
}

// readUsageFile reads UsageFile beneath root without following a symlink.
func readUsageFile(root *fsroot.Root) (UsageRecord, error) {
	f, err := root.OpenFile(UsageFile, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return UsageRecord{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, usageFileMax+1))
	if err != nil {
		return UsageRecord{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	var rec UsageRecord
	if len(data) > usageFileMax {
		return rec, fmt.Errorf("read %s: larger than %d bytes", f.Name(), usageFileMax)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if rec.Version != usageFileVersion {
		return rec, fmt.Errorf("read %s: version %d, want %d", f.Name(), rec.Version, usageFileVersion)
	}
	return rec, nil
}

// jobRan adds a job's saved bytes and writes them before the job leaves
// the list: whoever waited for it then reads a count that includes it.
// When measure is set, the pool is measured again in the background
// (refreshLater): a measurement walks every file's extents, which is no
// work on what the job changed, and at a burst's end one serves all.
// Until the pool is first measured, the file's Time is 0.
func (u *usageKeeper) jobRan(saved int64, measure bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.saved.Add(saved)
	u.writeLocked(u.last)
	if measure {
		u.refreshLater()
	}
}

// addSaved adds the saved bytes of a job whose pool a later job measures
// (Pool.jobEnded). It does not wait for a measurement under way.
func (u *usageKeeper) addSaved(saved int64) {
	u.saved.Add(saved)
	u.unwritten.Store(true)
}

// waitLocked is how long to wait from now before measuring again.
func (u *usageKeeper) waitLocked(now time.Time) time.Duration {
	if u.took < usageCheap {
		return 0
	}
	return u.measured.Add(usageShare * u.took).Sub(now)
}

// refreshLater measures the pool in the background, after usageDelay and
// at most once per usageShare times the last measurement's length once
// that is over usageCheap; requests made while one waits are served by
// it.
func (u *usageKeeper) refreshLater() {
	if !u.pending.CompareAndSwap(false, true) {
		return
	}
	go func() {
		// The I/O priority belongs to the thread, which ends with the
		// goroutine since it is never unlocked.
		runtime.LockOSThread()
		if u.idleIO {
			if err := ioprio.SetIdle(); err != nil {
				u.log.Debug("cannot lower the I/O priority of measuring", "err", err)
			}
		}
		time.Sleep(usageDelay)
		u.mu.Lock()
		for wait := u.waitLocked(time.Now()); wait > 0 && !u.closed; wait = u.waitLocked(time.Now()) {
			u.mu.Unlock()
			time.Sleep(wait)
			u.mu.Lock()
		}
		u.pending.Store(false) // a change from now on needs another measurement
		u.mu.Unlock()
		u.measure()
	}()
}

// measure measures the pool and writes the figures, unless the keeper
// closed; a failure costs only the figures' freshness and is logged.
func (u *usageKeeper) measure() {
	u.measuring.Lock()
	defer u.measuring.Unlock()
	began := time.Now()
	u.mu.Lock()
	closed := u.closed
	// A refresh asked for meanwhile counts its wait from this start.
	u.measured = began
	u.mu.Unlock()
	if closed {
		return
	}
	r, err := measurePool(u.root)
	took := time.Since(began)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.took = took
	// Counted once the figures are written, whatever becomes of them.
	defer u.measurements.Add(1)
	rec := u.last
	if err != nil {
		u.log.Warn("cannot measure the pool", "dir", u.root.Name(), "err", err)
	} else {
		rec = UsageRecord{Time: began.Unix(), DiskUsage: r.Total.DiskBytes,
			Uncompressed: r.Total.UncompressedBytes, Referenced: r.Total.ReferencedBytes}
		u.log.Debug("measured the pool", "dir", u.root.Name(), "files", r.Files, "extents", r.Extents,
			"ms", took.Milliseconds())
	}
	u.writeLocked(rec)
}

// writeLocked writes the file: rec's figures with the saved bytes so far;
// a failure is logged, and the saved bytes are written again next time.
func (u *usageKeeper) writeLocked(rec UsageRecord) {
	if u.closed {
		return
	}
	u.unwritten.Store(false) // before saved is read: a later addSaved sets it again
	rec.Version, rec.DirPath, rec.Saved = usageFileVersion, u.root.Name(), u.saved.Load()
	if err := writeUsageFile(u.root, rec); err != nil {
		u.unwritten.Store(true)
		u.log.Warn("cannot write the pool's usage figures", "err", err)
		return
	}
	u.last = rec
	u.writes.Add(1)
}

// savedBytes is the disk space the pool's jobs freed, net.
func (u *usageKeeper) savedBytes() int64 { return u.saved.Load() }

// release lets go of the pool directory's descriptor while the pool is
// idle; the next measurement or write opens it again.
func (u *usageKeeper) release() error { return u.root.Release() }

// close waits for a measurement under way, writes the saved bytes not
// written yet, and stops any later measurement.
func (u *usageKeeper) close() error {
	u.measuring.Lock()
	defer u.measuring.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.unwritten.Load() {
		u.writeLocked(u.last)
	}
	u.closed = true
	return u.root.Close()
}

// measurePool adds up the pool's image files (clean, dirty, precache,
// import, revisions: every regular file in a VM's directory but files
// being written), with compsize's figures. The walk takes no volume lock:
// a file renamed during it can be missed or, under two names, counted
// once.
func measurePool(root *fsroot.Root) (usage.Report, error) {
	totals := usage.NewTotals()
	for _, top := range volume.TopDirs {
		vms, err := readDirBeneath(root, top)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return usage.Report{}, err
		}
		for _, vm := range vms {
			if !vm.IsDir() {
				continue
			}
			if err := measureVMDir(root, totals, path.Join(top, vm.Name())); err != nil {
				return usage.Report{}, err
			}
		}
	}
	return totals.Report(), nil
}

func measureVMDir(root *fsroot.Root, totals *usage.Totals, dir string) error {
	files, err := readDirBeneath(root, dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil // gone or replaced since listed
	}
	if err != nil {
		return err
	}
	for _, e := range files {
		if !e.Type().IsRegular() || strings.Contains(e.Name(), "~") {
			continue
		}
		f, err := root.OpenFile(path.Join(dir, e.Name()), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP) {
			continue
		}
		if err != nil {
			return err
		}
		err = totals.Add(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// readDirBeneath lists the directory name beneath root, refusing a
// symlink in its place.
func readDirBeneath(root *fsroot.Root, name string) ([]os.DirEntry, error) {
	d, err := root.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.Name(), err)
	}
	return entries, nil
}

// writeUsageFile replaces UsageFile durably: a temp file beside it,
// fsync, rename, fsync of the directory; no name on the way is followed
// if it is a symlink.
func writeUsageFile(root *fsroot.Root, rec UsageRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode usage figures: %w", err)
	}
	tmp := UsageFile + "~"
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = root.Rename(tmp, UsageFile)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write %s: %w", path.Join(root.Name(), UsageFile), err)
	}
	dir, err := root.OpenFile(volume.StateDir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir.Name(), err)
	}
	return nil
}
