package btrfstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mountLine returns mnt's line in /proc/mounts, or "".
func mountLine(t *testing.T, mnt string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == mnt {
			return line
		}
	}
	return ""
}

func TestMountAndCleanup(t *testing.T) {
	tests := []struct {
		name     string
		mount    func(t *testing.T) string
		fsType   int64
		wantOpts string
	}{
		{"btrfs", func(t *testing.T) string { return Mount(t, 0) }, unix.BTRFS_SUPER_MAGIC, ""},
		{"btrfs with options", func(t *testing.T) string { return Mount(t, 256<<20, "compress=zstd") },
			unix.BTRFS_SUPER_MAGIC, "compress=zstd"},
		{"tmpfs", func(t *testing.T) string { return Tmpfs(t) }, unix.TMPFS_MAGIC, ""},
	}
	for _, tt := range tests {
		var mnt string
		t.Run(tt.name, func(t *testing.T) {
			mnt = tt.mount(t)
			var st unix.Statfs_t
			if err := unix.Statfs(mnt, &st); err != nil {
				t.Fatal(err)
			}
			if st.Type != tt.fsType {
				t.Errorf("filesystem type %#x, want %#x", st.Type, tt.fsType)
			}
			if line := mountLine(t, mnt); !strings.Contains(line, tt.wantOpts) {
				t.Errorf("mount line %q lacks %q", line, tt.wantOpts)
			}
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
		if mnt == "" {
			continue
		}
		if line := mountLine(t, mnt); line != "" {
			t.Errorf("%s still mounted after the test: %s", mnt, line)
		}
		if _, err := os.Stat(mnt); !os.IsNotExist(err) {
			t.Errorf("mount point %s left behind: %v", mnt, err)
		}
	}
}

// recorder is a testing.TB that records Skip and Fatal instead of
// stopping the goroutine.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skip(...any)           { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestUnavailable(t *testing.T) {
	tests := []struct {
		env                 string
		wantSkip, wantFatal bool
	}{
		{"", true, false},
		{"0", true, false},
		{"1", false, true},
	}
	for _, tt := range tests {
		t.Run(RequireEnv+"="+tt.env, func(t *testing.T) {
			t.Setenv(RequireEnv, tt.env)
			r := &recorder{TB: t}
			unavailable(r, "no %s here", "btrfs")
			if r.skipped != tt.wantSkip || r.failed != tt.wantFatal {
				t.Errorf("skipped %v, failed %v; want %v, %v", r.skipped, r.failed, tt.wantSkip, tt.wantFatal)
			}
		})
	}
}
