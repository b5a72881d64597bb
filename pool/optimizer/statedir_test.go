// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/logtest"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestStateDirIsConfined plants a symlink, a hard link or a FIFO at each
// name of the pool's state directory, then opens the pool and does what
// writes there: saving the state, loading and flushing the dedup index,
// making a compressed copy. Nothing outside the pool may change, and
// nothing may hang.
func TestStateDirIsConfined(t *testing.T) {
	mnt := btrfstest.Mount(t, 1<<30)
	const hash, addr = 0x9e3779b97f4a7c15, 7 * 4096
	for i, tc := range []struct {
		name    string
		refused bool // the pool is not opened at all
		plant   func(t *testing.T, state, outside string)
	}{
		{"state dir symlink", true, func(t *testing.T, state, outside string) {
			must(t, os.Remove(state))
			must(t, os.Symlink(outside, state))
		}},
		{"state temp symlink", false, func(t *testing.T, state, outside string) {
			must(t, os.Symlink(filepath.Join(outside, "file"), filepath.Join(state, stateFile+"~")))
		}},
		{"state hard link", false, func(t *testing.T, state, outside string) {
			must(t, os.Link(filepath.Join(outside, "file"), filepath.Join(state, stateFile)))
		}},
		{"state FIFO", false, func(t *testing.T, state, outside string) {
			must(t, syscall.Mkfifo(filepath.Join(state, stateFile), 0o600))
		}},
		{"index symlink", false, func(t *testing.T, state, outside string) {
			must(t, os.Symlink(filepath.Join(outside, "index"), filepath.Join(state, indexName)))
		}},
		{"index hard link", false, func(t *testing.T, state, outside string) {
			must(t, os.Link(filepath.Join(outside, "index"), filepath.Join(state, indexName)))
		}},
		{"index FIFO", false, func(t *testing.T, state, outside string) {
			must(t, syscall.Mkfifo(filepath.Join(state, indexName), 0o600))
		}},
		{"index temp symlink", false, func(t *testing.T, state, outside string) {
			must(t, os.Symlink(filepath.Join(outside, "file"), filepath.Join(state, indexName+".new")))
		}},
		{"tmp symlink", false, func(t *testing.T, state, outside string) {
			must(t, os.Symlink(outside, filepath.Join(state, "tmp")))
		}},
		{"tmp entry symlink", false, func(t *testing.T, state, outside string) {
			must(t, os.Mkdir(filepath.Join(state, "tmp"), 0o700))
			must(t, os.Symlink(outside, filepath.Join(state, "tmp", "copy-1")))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := filepath.Join(mnt, strconv.Itoa(i))
			dir, outside := filepath.Join(base, "pool"), filepath.Join(base, "outside")
			for _, d := range []string{base, dir, filepath.Join(dir, volume.StateDir), outside, filepath.Join(outside, "tmp")} {
				must(t, os.Mkdir(d, 0o755))
			}
			must(t, os.WriteFile(filepath.Join(outside, "file"), []byte("outside"), 0o600))
			must(t, os.WriteFile(filepath.Join(outside, "tmp", "keep"), []byte("outside"), 0o600))
			writeIndex(t, filepath.Join(outside, "index"), 1*mib, hash, addr)
			tc.plant(t, filepath.Join(dir, volume.StateDir), outside)
			old := time.Unix(1e9, 0)
			filepath.WalkDir(outside, func(path string, _ fs.DirEntry, _ error) error {
				return os.Chtimes(path, old, old)
			})
			before := snapshotTree(t, outside)

			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := useStateDir(t, dir, hash, addr); err != nil && !tc.refused {
					t.Errorf("the pool is not usable: %v", err)
				}
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the pool's state directory hung")
			}
			if after := snapshotTree(t, outside); after != before {
				t.Errorf("outside the pool changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// useStateDir opens the pool at dir and does everything that writes to
// its state directory, and returns what failed.
func useStateDir(t *testing.T, dir string, hash, addr uint64) error {
	sched := NewScheduler(SchedulerConfig{IndexSizes: IndexSizes{Default: 1 * mib}}, logtest.Discard(), nil)
	p, err := OpenTestPool(t, sched, dir)
	if err != nil {
		t.Logf("open: %v", err)
		return err
	}
	errs := []error{p.state.update(func(s *state) { s.Started["appvms/a/private"] = 1 })}
	f, err := p.dedupIndex()
	if err == nil {
		f.Insert(hash+1, addr)
		f.Insert(hash+2, addr)
		err = p.flushIndex()
	}
	errs = append(errs, err)
	c, err := newCompressedCopy(p.tmpDir(), newCopyEncoder(1, 0, 0, func(error) {}))
	if err == nil {
		err = c.write(make([]byte, 1<<16), copyBase)
		c.remove()
	}
	return errors.Join(append(errs, err)...)
}

// snapshotTree describes every entry under dir: its name, type, mode,
// mtime and content hash.
func snapshotTree(t *testing.T, dir string) string {
	t.Helper()
	var out string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(data))
		}
		out += fmt.Sprintf("%s %v %d %.12s; ", path[len(dir):], info.Mode(), info.ModTime().UnixNano(), sum)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
