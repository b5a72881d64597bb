// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

const mib = 1 << 20

// harness is a store on a fresh loop-mounted btrfs.
type harness struct {
	t       *testing.T
	dir     string
	store   *volume.Store
	commits []volume.Committed
	starts  []volume.Started
	// starting receives the vid of each start asked for, as the Starting
	// hook is called.
	starting chan string
	// precacheLater is what the commit hook answers.
	precacheLater bool
	writing       int      // operations between Writing and its done
	writes        []string // finished writing operations, in order
	mu            sync.Mutex
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	mnt := btrfstest.Mount(t, 512*mib)
	dir := filepath.Join(mnt, "pool")
	for _, d := range []string{dir, dir + "/appvms", dir + "/vm-templates"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, dir: dir, starting: make(chan string, 64)}
	log := logtest.Discard()
	store, err := volume.Open(dir, log, volume.Hooks{
		Starting: func(vid string) {
			select {
			case h.starting <- vid:
			default: // a test that does not read them
			}
		},
		Started: func(st volume.Started) {
			h.mu.Lock()
			h.starts = append(h.starts, st)
			h.mu.Unlock()
		},
		Committed: func(c volume.Committed) bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.commits = append(h.commits, c)
			return h.precacheLater
		},
		Writing: func(op, vid string) func() {
			h.mu.Lock()
			h.writing++
			h.mu.Unlock()
			return func() {
				h.mu.Lock()
				h.writing--
				h.writes = append(h.writes, op+" "+vid)
				h.mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h.store = store
	return h
}

func (h *harness) path(name string) string { return filepath.Join(h.dir, name) }

func (h *harness) must(st volume.State, err error) volume.State {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// write puts data at off in the pool file name, as a VM writes its disk.
func (h *harness) write(name string, off int64, data []byte) {
	h.t.Helper()
	f, err := os.OpenFile(h.path(name), os.O_WRONLY, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) sum(name string) string {
	h.t.Helper()
	data, err := os.ReadFile(h.path(name))
	if err != nil {
		h.t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func (h *harness) exists(name string) bool {
	_, err := os.Lstat(h.path(name))
	return err == nil
}

func (h *harness) assertFiles(want map[string]bool) {
	h.t.Helper()
	for name, present := range want {
		if got := h.exists(name); got != present {
			h.t.Errorf("%s exists = %v, want %v", name, got, present)
		}
	}
}

func (h *harness) revisionFile(vid string, rev volume.Revision) string {
	return vid + ".img." + rev.ID + "@" + rev.Timestamp + "Z"
}

func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func origin(vid string, keep int) volume.Spec {
	return volume.Spec{VID: vid, RW: true, SaveOnStop: true, RevisionsToKeep: keep, Size: 8 * mib}
}

func TestOriginCommitKeepsRevisionAndSharing(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	h.assertFiles(map[string]bool{"appvms/work/private.img": true, "appvms/work/private-precache.img": true})

	st := h.must(h.store.Start(spec))
	if !st.Dirty {
		t.Fatal("started origin volume is not dirty")
	}
	h.assertFiles(map[string]bool{"appvms/work/private-dirty.img": true, "appvms/work/private-precache.img": false})
	h.write("appvms/work/private-dirty.img", 0, pattern(1, 8*mib))
	first := h.sum("appvms/work/private-dirty.img")
	h.must(h.store.Stop(spec))

	h.must(h.store.Start(spec))
	h.write("appvms/work/private-dirty.img", 2*mib, pattern(9, mib))
	second := h.sum("appvms/work/private-dirty.img")
	st = h.must(h.store.Stop(spec))

	if st.Dirty || len(st.Revisions) != 1 || st.Revisions[0].ID != "2" {
		t.Fatalf("state after two commits = %+v, want clean with revision 2 only", st)
	}
	if got := h.sum("appvms/work/private.img"); got != second {
		t.Error("clean image does not hold the second session's data")
	}
	if got := h.sum(h.revisionFile("appvms/work/private", st.Revisions[0])); got != first {
		t.Error("revision does not hold the first session's data")
	}
	if h.sum("appvms/work/private-precache.img") != second {
		t.Error("precache differs from the clean image")
	}
	assertSameMtime(t, h.path("appvms/work/private.img"), h.path("appvms/work/private-precache.img"))

	shared := sharedBytes(t, h.path("appvms/work/private.img"), h.path(h.revisionFile("appvms/work/private", st.Revisions[0])))
	if want := int64(7 * mib); shared != want {
		t.Errorf("clean image and revision share %d bytes, want %d (all but the rewritten MiB)", shared, want)
	}
	if len(h.commits) != 2 || h.commits[1].Clean.Name() != "appvms/work/private.img" || h.commits[1].Clean.Kind() != volume.CleanFile {
		t.Errorf("commit hook calls = %+v", h.commits)
	}
	if len(h.starts) != 2 || h.starts[0].Reused || h.starts[0].Dirty.Name() != "appvms/work/private-dirty.img" ||
		h.starts[0].Dirty.VID() != spec.VID || h.starts[0].Dirty.Kind() != volume.DirtyFile {
		t.Errorf("start hook calls = %+v", h.starts)
	}
	h.must(h.store.Info(spec))
	wantWrites := []string{"create", "start", "stop", "start", "stop"}
	if h.writing != 0 || len(h.writes) != len(wantWrites) {
		t.Fatalf("writing hook: %d open, calls %v, want %v", h.writing, h.writes, wantWrites)
	}
	for i, w := range wantWrites {
		if h.writes[i] != w+" appvms/work/private" {
			t.Errorf("write %d = %q, want %q", i, h.writes[i], w)
		}
	}
}

// TestStartingHookRunsBeforeTheLock: a start tells the pool it is coming
// before it waits for the volume's lock, which the optimizer holds a step
// at a time, so that the pool can stop the optimizer before its next step.
func TestStartingHookRunsBeforeTheLock(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	started := make(chan error, 1)
	err := h.store.Locked(spec.VID, "optimize", func(*volume.Locked) error {
		go func() {
			_, err := h.store.Start(spec)
			started <- err
		}()
		select {
		case vid := <-h.starting:
			if vid != spec.VID {
				t.Errorf("Starting(%q), want %q", vid, spec.VID)
			}
		case <-time.After(10 * time.Second):
			t.Error("Starting not called while the lock is held")
		}
		select {
		case err := <-started:
			t.Errorf("start finished under the optimizer's lock: %v", err)
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
}

func TestPrecacheLaterAndLockedAccess(t *testing.T) {
	h := newHarness(t)
	h.precacheLater = true
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	h.must(h.store.Start(spec))
	h.write("appvms/work/private-dirty.img", 0, pattern(2, mib))
	want := h.sum("appvms/work/private-dirty.img")
	other := origin("appvms/other/private", 1)
	h.must(h.store.Create(other))
	// Files the optimizer must not open under this volume's lock: the
	// dirty image (the VM's), another volume's image, and no file at all.
	refused := map[string]volume.File{"zero File": {}}
	for what, vid := range map[string]string{"own": spec.VID, "other": other.VID} {
		files, err := h.store.Files(vid)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if what == "other" || f.Kind() == volume.DirtyFile {
				refused[what+" "+f.Kind().String()] = f
			}
		}
	}
	if _, ok := refused["own dirty"]; !ok || len(refused) != 4 {
		t.Fatalf("files to refuse: %v, want own dirty, other clean and precache", refused)
	}

	err := h.store.Locked(spec.VID, "optimize", func(l *volume.Locked) error {
		if running, err := l.Running(); err != nil || !running {
			t.Errorf("Running = %v, %v while started", running, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.must(h.store.Stop(spec))
	h.assertFiles(map[string]bool{"appvms/work/private-precache.img": false})

	err = h.store.Locked(spec.VID, "optimize", func(l *volume.Locked) error {
		if running, err := l.Running(); err != nil || running {
			t.Errorf("Running = %v, %v after stop", running, err)
		}
		revs, err := l.Revisions()
		if err != nil || len(revs) != 1 {
			t.Errorf("Revisions = %v, %v", revs, err)
		}
		f, err := l.Open(l.Clean(), os.O_RDONLY)
		if err != nil {
			return err
		}
		f.Close()
		for what, file := range refused {
			if f, err := l.Open(file, os.O_RDONLY); !errors.Is(err, volume.ErrInvalidName) {
				if err == nil {
					f.Close()
				}
				t.Errorf("Open of %s %q: %v, want ErrInvalidName", what, file, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.MakePrecache(spec.VID); err != nil {
		t.Fatal(err)
	}
	assertSameMtime(t, h.path("appvms/work/private.img"), h.path("appvms/work/private-precache.img"))

	// Without a precache, start falls back to a reflink of the image.
	if _, err := os.Stat(h.path("appvms/work/private-precache.img")); err != nil {
		t.Fatal(err)
	}
	os.Remove(h.path("appvms/work/private-precache.img"))
	h.must(h.store.Start(spec))
	if h.sum("appvms/work/private-dirty.img") != want {
		t.Fatal("start without a precache lost data")
	}
	if err := h.store.MakePrecache(spec.VID); err != nil {
		t.Fatal(err)
	}
	h.assertFiles(map[string]bool{"appvms/work/private-precache.img": false})
}

func TestRevisionTimestampIsDemotedImageMtime(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 2)
	h.must(h.store.Create(spec))
	when := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := os.Chtimes(h.path("appvms/work/private.img"), when, when); err != nil {
		t.Fatal(err)
	}
	h.must(h.store.Start(spec))
	st := h.must(h.store.Stop(spec))
	if len(st.Revisions) != 1 || st.Revisions[0] != (volume.Revision{ID: "1", Timestamp: "2025-03-04T05:06:07"}) {
		t.Fatalf("revisions = %+v", st.Revisions)
	}
}

func TestStopIsIdempotentAndStartReusesDirty(t *testing.T) {
	h := newHarness(t)
	spec := origin("vm-templates/fedora/root", 1)
	h.must(h.store.Create(spec))
	h.must(h.store.Start(spec))
	h.write("vm-templates/fedora/root-dirty.img", mib, pattern(3, mib))
	want := h.sum("vm-templates/fedora/root-dirty.img")

	// A crash: the VM is gone without a stop; the next start must keep
	// the uncommitted data.
	h.must(h.store.Start(spec))
	if h.sum("vm-templates/fedora/root-dirty.img") != want {
		t.Fatal("restart after a crash lost the uncommitted data")
	}
	first := h.must(h.store.Stop(spec))
	again := h.must(h.store.Stop(spec))
	if len(first.Revisions) != 1 || len(again.Revisions) != 1 || first.Revisions[0] != again.Revisions[0] {
		t.Fatalf("second stop changed revisions: %+v then %+v", first.Revisions, again.Revisions)
	}
	if h.sum("vm-templates/fedora/root.img") != want {
		t.Fatal("commit lost data")
	}
}

func TestSnapshotStartsFromCommittedSource(t *testing.T) {
	h := newHarness(t)
	tpl := origin("vm-templates/fedora/root", 1)
	h.must(h.store.Create(tpl))
	h.must(h.store.Start(tpl))
	h.write("vm-templates/fedora/root-dirty.img", 0, pattern(5, 4*mib))
	h.must(h.store.Stop(tpl))
	committed := h.sum("vm-templates/fedora/root.img")

	// The template runs again and writes; the AppVM must still see the
	// committed image.
	h.must(h.store.Start(tpl))
	h.write("vm-templates/fedora/root-dirty.img", 0, pattern(6, mib))

	snap := volume.Spec{VID: "appvms/work/root", RW: true, SnapOnStart: true, Source: tpl.VID, Size: tpl.Size}
	h.must(h.store.Verify(snap))
	h.must(h.store.Start(snap))
	if h.sum("appvms/work/root-dirty.img") != committed {
		t.Fatal("snapshot does not start from the source's committed image")
	}
	assertSameInode(t, h.path("appvms/work/root.img"), h.path("vm-templates/fedora/root.img"))
	h.write("appvms/work/root-dirty.img", 0, pattern(7, mib))
	st := h.must(h.store.Stop(snap))
	if st.Dirty || len(st.Revisions) != 0 {
		t.Fatalf("snapshot state after stop = %+v", st)
	}
	h.assertFiles(map[string]bool{"appvms/work/root.img": false, "appvms/work/root-dirty.img": false})
	if h.sum("vm-templates/fedora/root.img") != committed {
		t.Fatal("snapshot writes reached the source")
	}
}

func TestVolatileKeepsManualResize(t *testing.T) {
	h := newHarness(t)
	spec := volume.Spec{VID: "appvms/work/volatile", RW: true, Size: 4 * mib}
	h.must(h.store.Create(spec))
	h.assertFiles(map[string]bool{"appvms/work/volatile.img": false})
	st := h.must(h.store.Start(spec))
	if st.Size != 4*mib || st.Usage != 0 {
		t.Fatalf("fresh volatile image: %+v, want 4 MiB and sparse", st)
	}
	if err := os.Truncate(h.path("appvms/work/volatile-dirty.img"), 6*mib); err != nil {
		t.Fatal(err)
	}
	st = h.must(h.store.Stop(spec))
	if st.Size != 6*mib {
		t.Fatalf("recorded size after stop = %d, want the resized 6 MiB", st.Size)
	}
	h.assertFiles(map[string]bool{"appvms/work/volatile-dirty.img": false})
}

func TestRevert(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 3)
	h.must(h.store.Create(spec))
	sums := []string{h.sum("appvms/work/private.img")}
	for i := range 3 {
		h.must(h.store.Start(spec))
		h.write("appvms/work/private-dirty.img", int64(i)*mib, pattern(byte(10+i), mib))
		sums = append(sums, h.sum("appvms/work/private-dirty.img"))
		h.must(h.store.Stop(spec))
	}
	// Revisions 1..3 hold sums[0..2]; the clean image holds sums[3].

	tests := []struct {
		name     string
		revision string
		want     int // index into sums now in the clean image
	}{
		{"named", "2", 1},
		{"latest undoes the previous revert", "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.must(h.store.Revert(spec, tt.revision))
			if h.sum("appvms/work/private.img") != sums[tt.want] {
				t.Fatalf("clean image after revert to %q is not state %d", tt.revision, tt.want)
			}
			if h.sum("appvms/work/private-precache.img") != sums[tt.want] {
				t.Fatal("precache not rebuilt")
			}
		})
	}

	h.must(h.store.Start(spec))
	_, err := h.store.Revert(spec, "")
	if !errors.Is(err, volume.ErrNotStopped) || err.Error() != "Cannot revert: appvms/work/private is not cleanly stopped" {
		t.Fatalf("revert of a dirty volume: %v", err)
	}
	h.must(h.store.Stop(spec))
	for _, bad := range []string{"99", "../x", "1@2"} {
		if _, err := h.store.Revert(spec, bad); err == nil {
			t.Errorf("revert to %q succeeded", bad)
		}
	}
}

func TestSnapshotsDisabled(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/big/private", 1)
	h.must(h.store.Create(spec))
	h.must(h.store.Start(spec))
	h.must(h.store.Stop(spec))

	spec.RevisionsToKeep = -1
	st := h.must(h.store.Start(spec))
	if len(st.Revisions) != 0 {
		t.Fatalf("revisions kept with snapshots disabled: %+v", st.Revisions)
	}
	h.assertFiles(map[string]bool{
		"appvms/big/private.img": false, "appvms/big/private-precache.img": false,
		"appvms/big/private-dirty.img": true,
	})
	if _, err := h.store.Export(spec); err == nil {
		t.Fatal("export of a running volume without snapshots succeeded")
	}
	h.write("appvms/big/private-dirty.img", 0, pattern(2, mib))
	want := h.sum("appvms/big/private-dirty.img")
	h.must(h.store.Stop(spec))
	h.assertFiles(map[string]bool{"appvms/big/private.img": true, "appvms/big/private-dirty.img": false, "appvms/big/private-precache.img": false})
	if h.sum("appvms/big/private.img") != want {
		t.Fatal("data lost")
	}
}

func TestResize(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	h.must(h.store.Start(spec))
	h.write("appvms/work/private-dirty.img", 0, pattern(4, mib))
	h.must(h.store.Stop(spec))
	rev := h.must(h.store.Info(spec)).Revisions[0]

	st := h.must(h.store.Resize(spec, 16*mib))
	if st.Size != 16*mib {
		t.Fatalf("size after stopped resize = %d", st.Size)
	}
	if info, _ := os.Stat(h.path(h.revisionFile("appvms/work/private", rev))); info.Size() != 8*mib {
		t.Fatal("resize changed the revision")
	}
	assertSameMtime(t, h.path("appvms/work/private.img"), h.path("appvms/work/private-precache.img"))

	spec.Size = 16 * mib
	h.must(h.store.Start(spec))
	st = h.must(h.store.Resize(spec, 20*mib))
	if info, _ := os.Stat(h.path("appvms/work/private-dirty.img")); st.Size != 20*mib || info.Size() != 20*mib {
		t.Fatalf("running resize: state %d", st.Size)
	}
	h.must(h.store.Stop(spec))

	spec.RW = false
	if _, err := h.store.Resize(spec, mib); !errors.Is(err, volume.ErrReadOnly) {
		t.Fatalf("resize of a read-only volume: %v", err)
	}
}

func TestImportData(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/restored/private", 1)
	h.must(h.store.Create(spec))

	path, err := h.store.ImportData(spec, 6*mib)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || len(data) != 6*mib || !bytes.Equal(data, make([]byte, 6*mib)) {
		t.Fatalf("import target is not 6 MiB of zeros (err %v, len %d)", err, len(data))
	}
	h.write("appvms/restored/private-import.img", mib, pattern(8, mib))
	want := h.sum("appvms/restored/private-import.img")
	st := h.must(h.store.ImportDataEnd(spec, true))
	if st.Size != 6*mib || len(st.Revisions) != 1 || h.sum("appvms/restored/private.img") != want {
		t.Fatalf("after import: %+v", st)
	}

	if _, err := h.store.ImportData(spec, mib); err != nil {
		t.Fatal(err)
	}
	h.must(h.store.ImportDataEnd(spec, false))
	h.assertFiles(map[string]bool{"appvms/restored/private-import.img": false})
	if h.sum("appvms/restored/private.img") != want {
		t.Fatal("failed import changed the volume")
	}
}

func TestImportVolume(t *testing.T) {
	h := newHarness(t)
	src := origin("vm-templates/fedora/private", 1)
	h.must(h.store.Create(src))
	h.must(h.store.Start(src))
	h.write("vm-templates/fedora/private-dirty.img", 0, pattern(12, 3*mib))
	h.must(h.store.Stop(src))
	want := h.sum("vm-templates/fedora/private.img")

	outside := filepath.Join(t.TempDir(), "foreign.img")
	if err := os.WriteFile(outside, pattern(13, 2*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, vid, source, sum string
		size                   int64
	}{
		{"reflink within the pool", "appvms/clone/private", h.path("vm-templates/fedora/private.img"), want, 8 * mib},
		{"sparse copy across filesystems", "appvms/other/private", outside, sha(pattern(13, 2*mib)), 2 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := origin(tt.vid, 1)
			h.must(h.store.Create(dst))
			st := h.must(h.store.ImportVolume(context.Background(), dst, tt.source))
			if st.Size != tt.size || h.sum(tt.vid+".img") != tt.sum {
				t.Fatalf("imported %+v", st)
			}
			if len(st.Revisions) != 1 {
				t.Errorf("a fresh clone shows %d revisions, want 1 (its empty image)", len(st.Revisions))
			}
		})
	}
	if _, err := h.store.ImportVolume(context.Background(), origin("appvms/x/private", 1), "/nonexistent/src.img"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("import from a missing source: %v", err)
	}
	h.assertFiles(map[string]bool{"appvms/x/private-import.img": false})
}

func TestRemove(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/gone/private", 2)
	h.must(h.store.Create(spec))
	h.must(h.store.Start(spec))
	h.must(h.store.Stop(spec))
	h.must(h.store.Remove(spec))
	h.assertFiles(map[string]bool{"appvms/gone": false})
	h.must(h.store.Remove(spec)) // already gone: still fine
}

func TestStartRemovesOnlyOwnTempFiles(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/work/private", 1)
	h.must(h.store.Create(spec))
	for _, name := range []string{"private.img~abc", "private-precache.img~x", "private2.img~keep", "private.img.3@2025-01-01T00:00:00Z~y"} {
		if err := os.WriteFile(h.path("appvms/work/"+name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.must(h.store.Start(spec))
	h.assertFiles(map[string]bool{
		"appvms/work/private.img~abc": false, "appvms/work/private-precache.img~x": false,
		"appvms/work/private.img.3@2025-01-01T00:00:00Z~y": false, "appvms/work/private2.img~keep": true,
	})
}

func TestRefusesUnsafeNames(t *testing.T) {
	h := newHarness(t)
	outside := t.TempDir()
	target := filepath.Join(outside, "target")
	if err := os.WriteFile(target, []byte("not a VM image"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, h.path("appvms/evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(h.path("appvms/planted"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, h.path("appvms/planted/private.img")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		vid  string
		want error
	}{
		{"dot-dot", "appvms/../../etc", volume.ErrInvalidName},
		{"absolute", "/etc/passwd", volume.ErrInvalidName},
		{"NUL", "appvms/a\x00b/private", volume.ErrInvalidName},
		{"unknown prefix", "etc/work/private", volume.ErrInvalidName},
		{"symlinked directory", "appvms/evil/private", nil},
		{"symlinked image", "appvms/planted/private", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := origin(tt.vid, 1)
			_, errStart := h.store.Start(spec)
			_, errVerify := h.store.Verify(spec)
			_, errExport := h.store.Export(spec)
			for _, err := range []error{errStart, errVerify, errExport} {
				if err == nil {
					t.Fatal("operation on an unsafe name succeeded")
				}
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Fatalf("error %v, want %v", err, tt.want)
				}
			}
			// Create replaces a planted link without following it, or fails.
			_, _ = h.store.Create(spec)
			entries, _ := os.ReadDir(outside)
			data, _ := os.ReadFile(target)
			if len(entries) != 1 || string(data) != "not a VM image" {
				t.Fatalf("the pool reached outside its directory: %v", entries)
			}
		})
	}
}

// A symlink that stays inside the pool, from one VM's directory to
// another's, is refused like any other: through it, an operation on one
// VM's volume would change the other VM's files.
func TestRefusesLinksBetweenVMDirectories(t *testing.T) {
	h := newHarness(t)
	work := origin("appvms/work/private", 1)
	h.must(h.store.Create(work))
	h.write("appvms/work/private.img", 0, []byte("work's data"))
	want := h.sum("appvms/work/private.img")
	if err := os.Symlink("work", h.path("appvms/evil")); err != nil {
		t.Fatal(err)
	}
	evil := origin("appvms/evil/private", 1)
	ops := map[string]func() error{
		"start":  func() error { _, err := h.store.Start(evil); return err },
		"resize": func() error { _, err := h.store.Resize(evil, 1<<20); return err },
		"revert": func() error { _, err := h.store.Revert(evil, ""); return err },
		"remove": func() error { _, err := h.store.Remove(evil); return err },
	}
	for name, op := range ops {
		if err := op(); err == nil {
			t.Errorf("%s through a symlinked VM directory succeeded", name)
		}
	}
	if got := h.sum("appvms/work/private.img"); got != want {
		t.Errorf("work's image changed through the link: %s, want %s", got, want)
	}
	h.assertFiles(map[string]bool{"appvms/work/private-dirty.img": false, "appvms/work/private-precache.img": true})
}

func TestSameVolumeIsSerialized(t *testing.T) {
	h := newHarness(t)
	spec := origin("appvms/busy/private", 2)
	h.must(h.store.Create(spec))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 20 {
		wg.Add(2)
		go func() { defer wg.Done(); _, err := h.store.Start(spec); errs <- err }()
		go func() { defer wg.Done(); _, err := h.store.Stop(spec); errs <- err }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	h.must(h.store.Stop(spec))
	st := h.must(h.store.Info(spec))
	if st.Dirty || len(st.Revisions) > 2 {
		t.Fatalf("state after concurrent start/stop: %+v", st)
	}
	entries, _ := os.ReadDir(h.path("appvms/busy"))
	for _, e := range entries {
		if strings.Contains(e.Name(), "~") {
			t.Fatalf("temp file left: %s", e.Name())
		}
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func assertSameMtime(t *testing.T, a, b string) {
	t.Helper()
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA != nil || errB != nil || !ia.ModTime().Equal(ib.ModTime()) || ia.Size() != ib.Size() {
		t.Fatalf("%s and %s differ in mtime or size", a, b)
	}
}

func assertSameInode(t *testing.T, a, b string) {
	t.Helper()
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if ia.Sys().(*syscall.Stat_t).Ino != ib.Sys().(*syscall.Stat_t).Ino {
		t.Fatalf("%s is not a hardlink of %s", a, b)
	}
}

// sharedBytes counts the bytes of a's data that b references too: ranges
// of the same disk extent that both files point into.
func sharedBytes(t *testing.T, a, b string) int64 {
	t.Helper()
	var n int64
	eb := extentsOf(t, b)
	for _, x := range extentsOf(t, a) {
		if x.IsHole() || x.Type != btrfs.ExtentRegular {
			continue
		}
		for _, y := range eb {
			if y.DiskBytenr != x.DiskBytenr {
				continue
			}
			lo := max(x.ExtentOffset, y.ExtentOffset)
			hi := min(x.ExtentOffset+x.Length, y.ExtentOffset+y.Length)
			if hi > lo {
				n += int64(hi - lo)
			}
		}
	}
	return n
}

func extentsOf(t *testing.T, path string) []btrfs.Extent {
	t.Helper()
	btrfstest.Sync(t, path)
	return btrfstest.Extents(t, path)
}
