// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// revisionName matches any file that file-reflink's revision glob of a
// volume named private would pick up.
var revisionName = regexp.MustCompile(`^private\.img\..+@[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$`)

// revisionFiles maps the name of every revision file of
// appvms/work/private to the digest of its content.
func (h *harness) revisionFiles() map[string]string {
	h.t.Helper()
	entries, err := os.ReadDir(h.path("appvms/work"))
	if err != nil {
		h.t.Fatal(err)
	}
	found := map[string]string{}
	for _, e := range entries {
		if revisionName.MatchString(e.Name()) {
			found[e.Name()] = h.sum("appvms/work/" + e.Name())
		}
	}
	return found
}

// committedThrice commits images A, B and C in turn to a volume keeping
// two revisions, and returns their digests.
func (h *harness) committedThrice(spec volume.Spec) []string {
	h.t.Helper()
	h.must(h.store.Create(spec))
	var sums []string
	for i := range 3 {
		h.must(h.store.Start(spec))
		h.write("appvms/work/private-dirty.img", int64(i)*mib, pattern(byte(40+i), mib))
		sums = append(sums, h.sum("appvms/work/private-dirty.img"))
		h.must(h.store.Stop(spec))
	}
	return sums
}

func mkdirWithFile(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFailedCommitKeepsRevisions fails every step of a commit that can
// fail and checks that the revisions, names and contents, are untouched
// and the clean image still holds the last commit, however often it is
// retried.
func TestFailedCommitKeepsRevisions(t *testing.T) {
	const base = "appvms/work/private"
	tests := []struct {
		name  string
		plant func(h *harness, spec volume.Spec)
		op    func(h *harness, spec volume.Spec) error
		want  error
	}{
		{
			name:  "import end without an import",
			plant: func(*harness, volume.Spec) {},
			op:    importEnd,
			want:  fs.ErrNotExist,
		},
		{
			name:  "import end after a start removed the import",
			plant: func(h *harness, spec volume.Spec) { h.importThenStart(spec) },
			op:    importEnd,
			want:  fs.ErrNotExist,
		},
		{
			name: "stop with a symlink at the dirty image",
			plant: func(h *harness, _ volume.Spec) {
				if err := os.Symlink("private.img", h.path(base+"-dirty.img")); err != nil {
					h.t.Fatal(err)
				}
			},
			op:   stop,
			want: volume.ErrInvalidName,
		},
		{
			name:  "stop with a directory at the dirty image",
			plant: func(h *harness, _ volume.Spec) { mkdirWithFile(h.t, h.path(base+"-dirty.img")) },
			op:    stop,
			want:  volume.ErrInvalidName,
		},
		{
			name:  "import end with a directory at the precache",
			plant: func(h *harness, spec volume.Spec) { h.importWith(spec, base+"-precache.img") },
			op:    importEnd,
			want:  volume.ErrInvalidName,
		},
		{
			name:  "import end with a directory at the import image",
			plant: func(h *harness, _ volume.Spec) { mkdirWithFile(h.t, h.path(base+"-import.img")) },
			op:    importEnd,
			want:  volume.ErrInvalidName,
		},
		{
			name:  "import end with a directory at the dirty image",
			plant: func(h *harness, spec volume.Spec) { h.importWith(spec, base+"-dirty.img") },
			op:    importEnd,
			want:  volume.ErrInvalidName,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			spec := origin(base, 2)
			sums := h.committedThrice(spec)
			tt.plant(h, spec)
			before := h.revisionFiles()
			if len(before) != 2 {
				t.Fatalf("revisions before = %v, want two", before)
			}
			for try := range 2 {
				err := tt.op(h, spec)
				if !errors.Is(err, tt.want) {
					t.Fatalf("try %d: error %v, want %v", try, err, tt.want)
				}
				if after := h.revisionFiles(); !maps.Equal(after, before) {
					t.Fatalf("try %d changed the revisions:\nbefore %v\nafter  %v", try, before, after)
				}
				if h.sum(base+".img") != sums[2] {
					t.Fatalf("try %d changed the clean image", try)
				}
			}
		})
	}
}

func importEnd(h *harness, spec volume.Spec) error {
	_, err := h.store.ImportDataEnd(spec, true)
	return err
}

func stop(h *harness, spec volume.Spec) error {
	_, err := h.store.Stop(spec)
	return err
}

// importThenStart is qubesd starting the VM between import_data and
// import_data_end: the start drops the unfinished import.
func (h *harness) importThenStart(spec volume.Spec) {
	h.t.Helper()
	if _, err := h.store.ImportData(spec, spec.Size); err != nil {
		h.t.Fatal(err)
	}
	h.must(h.store.Start(spec))
	h.must(h.store.Stop(spec))
}

// importWith makes a pending import with a directory planted at name.
func (h *harness) importWith(spec volume.Spec, name string) {
	h.t.Helper()
	if _, err := h.store.ImportData(spec, spec.Size); err != nil {
		h.t.Fatal(err)
	}
	h.write(spec.VID+"-import.img", 0, pattern(99, mib))
	if err := os.Remove(h.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.t.Fatal(err)
	}
	mkdirWithFile(h.t, h.path(name))
}

// TestCommitAfterKilledCommit: a commit killed between saving the
// revision and its rename leaves the clean image's inode linked as the
// newest revision. The next commit must take it as saved, or its own
// revision would push out one that revisions_to_keep keeps. A revision
// that only holds the same data (a session that wrote nothing) is still
// a revision of its own, as file-reflink keeps it.
func TestCommitAfterKilledCommit(t *testing.T) {
	const base = "appvms/work/private"
	tests := []struct {
		name string
		save func(t *testing.T, clean, revision string)
		want func(sums []string) []string // revision contents after the next commit, oldest first
	}{
		{
			name: "left-over hard link",
			save: func(t *testing.T, clean, revision string) {
				if err := os.Link(clean, revision); err != nil {
					t.Fatal(err)
				}
			},
			want: func(sums []string) []string { return []string{sums[1], sums[2]} },
		},
		{
			name: "reflink copy with the same mtime",
			save: func(t *testing.T, clean, revision string) {
				run(t, "cp", "--reflink=always", "--preserve=timestamps", clean, revision)
			},
			want: func(sums []string) []string { return []string{sums[2], sums[2]} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			spec := origin(base, 2)
			sums := h.committedThrice(spec)
			info, err := os.Stat(h.path(base + ".img"))
			if err != nil {
				t.Fatal(err)
			}
			planted := base + ".img.4@" + info.ModTime().UTC().Format("2006-01-02T15:04:05") + "Z"
			tt.save(t, h.path(base+".img"), h.path(planted))

			h.must(h.store.Start(spec))
			h.write(base+"-dirty.img", 0, pattern(77, mib))
			st := h.must(h.store.Stop(spec))
			var got []string
			for _, rev := range st.Revisions {
				got = append(got, h.sum(h.revisionFile(base, rev)))
			}
			if want := tt.want(sums); !slices.Equal(got, want) {
				t.Fatalf("revisions hold %v, want %v (commits %v)", got, want, sums)
			}
		})
	}
}

// TestSessionWithoutWritesKeepsRevision: a start and a stop that wrote
// nothing commit an image equal to the last one; it still becomes a
// revision, the revision is not the clean image's inode, and it holds
// the state it had.
func TestSessionWithoutWritesKeepsRevision(t *testing.T) {
	const base = "appvms/work/private"
	h := newHarness(t)
	spec := origin(base, 2)
	sums := h.committedThrice(spec)
	h.must(h.store.Start(spec))
	st := h.must(h.store.Stop(spec))
	if len(st.Revisions) != 2 {
		t.Fatalf("revisions = %+v, want two", st.Revisions)
	}
	for i, want := range []string{sums[1], sums[2]} {
		name := h.revisionFile(base, st.Revisions[i])
		if h.sum(name) != want {
			t.Errorf("revision %s does not hold commit %d", name, i+1)
		}
		info, err := os.Stat(h.path(name))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.Sys().(*syscall.Stat_t).Nlink; n != 1 {
			t.Errorf("revision %s has %d links, want 1", name, n)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestRevertAfterKilledCommit: a revert after a commit killed between
// its link and its rename takes the left-over revision as the saved
// clean image, whichever revision it reverts to.
func TestRevertAfterKilledCommit(t *testing.T) {
	const base = "appvms/work/private"
	tests := []struct {
		revision string
		image    int   // index into the commits of what the image holds after
		revs     []int // what the revisions hold after, oldest first
	}{
		{"2", 0, []int{1, 2}},    // A: B stays, the left-over holds C
		{"4", 2, []int{0, 1, 2}}, // the left-over itself: nothing moves
		{"", 2, []int{0, 1, 2}},  // the newest is the left-over too
	}
	for _, tt := range tests {
		t.Run("revision "+tt.revision, func(t *testing.T) {
			h := newHarness(t)
			spec := origin(base, 3)
			sums := h.committedThrice(spec) // revisions 1..3: empty, A, B; image C
			info := mustStat(t, h.path(base+".img"))
			leftover := base + ".img.4@" + info.ModTime().UTC().Format("2006-01-02T15:04:05") + "Z"
			if err := os.Link(h.path(base+".img"), h.path(leftover)); err != nil {
				t.Fatal(err)
			}
			st := h.must(h.store.Revert(spec, tt.revision))
			if h.sum(base+".img") != sums[tt.image] {
				t.Errorf("image does not hold commit %d", tt.image)
			}
			var got, want []string
			for _, rev := range st.Revisions[1:] { // the first holds the empty image
				got = append(got, h.sum(h.revisionFile(base, rev)))
			}
			for _, i := range tt.revs {
				want = append(want, sums[i])
			}
			if !slices.Equal(got, want) {
				t.Errorf("revisions after the first hold %v, want %v (commits %v)", got, want, sums)
			}
			h.must(h.store.Start(spec))
			st = h.must(h.store.Stop(spec))
			if newest := h.revisionFile(base, st.Revisions[len(st.Revisions)-1]); h.sum(newest) != sums[tt.image] {
				t.Errorf("the commit after the revert did not save the reverted image")
			}
		})
	}
}
