// SPDX-License-Identifier: GPL-2.0-or-later

package compress_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfstest"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
)

// Every optimizer job asks for the zstd property on the image and its
// directory, every compress run on each file; a file that has it must be
// left untouched (no transaction, same ctime).
func TestSetZstdPropertySetsItOnce(t *testing.T) {
	mnt := btrfstest.Mount(t, 256<<20)
	tests := []struct {
		before      string // "" leaves the property unset
		wantChanged bool
	}{
		{"", true},
		{"none", true},
		{"lzo", true},
		{"zstd", false},
	}
	for _, tt := range tests {
		t.Run("before="+tt.before, func(t *testing.T) {
			f, err := os.Create(filepath.Join(mnt, "f-"+tt.before))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tt.before != "" {
				if err := btrfs.SetCompressionProperty(f, tt.before); err != nil {
					t.Fatal(err)
				}
			}
			ctime := func() unix.Timespec {
				var st unix.Stat_t
				if err := unix.Fstat(int(f.Fd()), &st); err != nil {
					t.Fatal(err)
				}
				return st.Ctim
			}
			was := ctime()
			if err := compress.SetZstdProperty(f); err != nil {
				t.Fatal(err)
			}
			if got, err := btrfs.CompressionProperty(f); err != nil || got != "zstd" {
				t.Fatalf("property = %q, %v; want zstd", got, err)
			}
			if changed := ctime() != was; changed != tt.wantChanged {
				t.Errorf("ctime changed: %v, want %v", changed, tt.wantChanged)
			}
		})
	}
}
