// SPDX-License-Identifier: GPL-2.0-or-later

package ioprio_test

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/ioprio"
)

func TestSetAndGet(t *testing.T) {
	tests := []struct {
		name      string
		set       func() error
		wantClass int
		wantLevel int
	}{
		{"idle", ioprio.SetIdle, ioprio.ClassIdle, 0},
		{"best effort 7", func() error { return ioprio.SetBestEffort(7) }, ioprio.ClassBestEffort, 7},
		{"best effort 0", func() error { return ioprio.SetBestEffort(0) }, ioprio.ClassBestEffort, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each subtest runs in its own goroutine; it stays locked
			// when it ends, so the runtime discards the changed thread.
			runtime.LockOSThread()
			if err := tt.set(); err != nil {
				t.Fatal(err)
			}
			class, level, err := ioprio.Get()
			if err != nil {
				t.Fatal(err)
			}
			if class != tt.wantClass || level != tt.wantLevel {
				t.Errorf("Get = class %d level %d, want %d %d", class, level, tt.wantClass, tt.wantLevel)
			}
		})
	}
}

// Another thread keeps its own priority.
func TestPerThread(t *testing.T) {
	done := make(chan [2]int)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := ioprio.SetIdle(); err != nil {
			t.Error(err)
		}
		class, level, _ := ioprio.Get()
		done <- [2]int{class, level}
		<-done // stay on this thread while the other one looks
	}()
	if got := <-done; got[0] != ioprio.ClassIdle {
		t.Fatalf("locked thread: class %d level %d, want idle", got[0], got[1])
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	class, level, err := ioprio.Get()
	done <- [2]int{}
	if err != nil {
		t.Fatal(err)
	}
	if class == ioprio.ClassIdle {
		t.Errorf("other thread: class %d level %d, want not idle", class, level)
	}
}

func TestSetBestEffortRange(t *testing.T) {
	for _, level := range []int{-1, 8} {
		if err := ioprio.SetBestEffort(level); !errors.Is(err, unix.EINVAL) {
			t.Errorf("SetBestEffort(%d) = %v, want EINVAL", level, err)
		}
	}
}
