// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/btrfs-vdo/btrfs-vdo/internal/btrfs"
	"github.com/btrfs-vdo/btrfs-vdo/internal/compress"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// fileMark is how far full passes got through one file of a volume:
// every extent the file (inode Inode) holds with a generation below
// Generation was examined by a pass, or written by one. A full pass
// starts each file at its mark, so that an interrupted one resumes at
// the files it had not finished, and a later one, after writes made
// outside the daemon, reads only those.
type fileMark struct {
	Inode      uint64 `json:"inode"`
	Generation uint64 `json:"generation"`
}

// examinedMark is how far jobs examined a volume: its image and
// revisions hold no extent written below Gen that a job has not examined
// or written. A full job sets it; any later job, and a cold pass, only
// carries it forward, having examined only what was written since. It
// lets a later pass skip the old data even of a file put in place
// outside the daemon: a file-reflink commit makes the dirty image the
// clean one and a reflinked copy of the old clean one a revision, both
// new inodes.
//
// Carrying it forward rests on what markProcessed does: while the daemon
// owns the pool, only its jobs write into an image or revision, and each
// commit queues a job for what the VM wrote. Inode is the clean image the
// mark is about, and Next the dirty image a start made from it, which
// becomes the image the mark is about when the daemon commits it. Inode
// is 0 once the volume's image came from elsewhere (a revert, or a
// commit the daemon did not make from a start it saw), which only a full
// job mends. Gen stays true either way: whatever was put in place since
// was written at Gen or later, or reflinked from the volume's files. An
// import, which may reflink older data from anywhere, drops the mark.
type examinedMark struct {
	Gen   uint64 `json:"gen"`
	Inode uint64 `json:"inode,omitempty"`
	Next  uint64 `json:"next,omitempty"`
}

// sinceFor is the generation from which job works on the extents of the
// volume's file, inode ino: the job's own Since, raised to the volume's
// examined mark, and for a full job to the file's mark. A commit, revert
// or resize puts another inode under the name, and a revision of another
// name on the inode, so neither is taken for done by its file mark.
func (p *Pool) sinceFor(job Job, file volume.File, ino uint64) uint64 {
	since := job.Since
	p.state.view(func(st *state) {
		since = max(since, st.Examined[job.VID].Gen)
		if m, ok := st.Processed[job.VID][file.Name()]; job.Full && ok && m.Inode == ino {
			since = max(since, m.Generation)
		}
	})
	return since
}

// examinedBelow carries vid's examined mark forward to gen, the
// generation of a job's settle, if the volume's images are still those
// the mark is about. planned, when not 0, is the inode of the clean image
// a full job planned and went through: the mark is set anew if it is
// still the clean image. A volume with a job queued (a commit since the
// job's plan) keeps its mark as it was, and so does a running one: its
// dirty image, which a commit outside the daemon would make its image,
// may hold writes below gen, while a VM started after the check below
// writes at gen or later.
func (p *Pool) examinedBelow(gen uint64, vid string, planned uint64) {
	var clean uint64
	err := p.Volumes.ReadLocked(vid, func(l *volume.Locked) error {
		running, err := l.Running()
		if err != nil || running {
			return errors.Join(err, errHeld)
		}
		clean, err = p.inodeOf(l.Clean())
		return err
	})
	if err != nil {
		if !errors.Is(err, errHeld) {
			p.log.Debug("examined mark not carried forward", "pool", p.Name, "vid", vid, "err", err)
		}
		return
	}
	p.state.updateSoon(func(s *state) {
		m, ok := s.Examined[vid]
		if s.awaitsJob(vid) {
			return
		}
		if planned == clean || (ok && m.Inode == clean) {
			s.Examined[vid] = examinedMark{Gen: max(m.Gen, gen), Inode: clean, Next: m.Next}
		}
	})
}

// examinedStarted follows vid's examined mark to the dirty image a start
// made (inode dirty) from the clean image (inode clean), or, reused,
// left there by a start it followed before. Any other start leaves the
// mark to a full job, and so does one before the job of the last commit
// ran: the next commit makes that image, with what the VM wrote and its
// job has not examined, a revision, which only a full job reads.
func examinedStarted(s *state, st volume.Started, clean, dirty uint64) {
	m, ok := s.Examined[st.VID]
	switch {
	case !ok:
		return
	case s.awaitsJob(st.VID):
		m.Inode, m.Next = 0, 0
	case m.Inode != 0 && m.Inode == clean && !st.Reused:
		m.Next = dirty
	case !st.Reused || m.Next != dirty:
		m.Inode, m.Next = 0, 0
	}
	s.Examined[st.VID] = m
}

// awaitsJob reports whether a job other than a cold pass is queued for
// vid: what a commit put in place, or an optimize request asked for, is
// not examined yet.
func (s *state) awaitsJob(vid string) bool {
	return slices.ContainsFunc(s.Jobs, func(j Job) bool { return j.VID == vid && !j.Cold })
}

// examinedCommitted makes the image commit c put in place (inode clean)
// the one the volume's examined mark is about, if a start the mark
// followed made it; else it leaves the mark to a full job. An import
// drops the mark: its image may share extents written before the mark's
// generation with files no job of the volume examined (an import by
// reflink), which would take them for examined.
func examinedCommitted(s *state, c volume.Committed, clean uint64) {
	vid := c.VID
	m, ok := s.Examined[vid]
	if !ok {
		return
	}
	if c.Imported {
		delete(s.Examined, vid)
		return
	}
	if m.Next == 0 || m.Next != clean {
		clean = 0
	}
	s.Examined[vid] = examinedMark{Gen: m.Gen, Inode: clean}
}

// unexamined leaves vid's examined mark to a full job: a job that
// failed, or a commit no job was queued for, left data nothing examined,
// all written at the mark's generation or later.
func unexamined(s *state, vid string) {
	if m, ok := s.Examined[vid]; ok {
		s.Examined[vid] = examinedMark{Gen: m.Gen}
	}
}

// markProcessed records, once a full job has finished the file fw, how
// far it got. The mark is taken after committing what the job wrote, so
// that the next pass reads none of it: while the daemon owns the pool,
// nothing else writes into a clean image or revision, so the job's are
// the only writes since it planned the file. files are the volume's
// files the job planned: marks of any other file (a revision pruned or
// renamed since) are dropped. A file replaced or removed during the job
// is left unmarked.
func (p *Pool) markProcessed(vid string, fw fileWork, files []fileWork) error {
	var gen uint64
	err := p.Volumes.Locked(vid, "mark", func(l *volume.Locked) error {
		f, err := l.Open(fw.name, os.O_RDONLY)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		if ino, err := compress.InodeOf(f); err != nil || ino != fw.ino {
			return err
		}
		gen, err = btrfs.SyncGeneration(f)
		return err
	})
	if err != nil {
		return fmt.Errorf("mark %s processed: %w", fw.name, err)
	}
	if gen == 0 {
		return nil
	}
	err = p.state.update(func(s *state) {
		marks := map[string]fileMark{fw.name.Name(): {Inode: fw.ino, Generation: gen}}
		for _, other := range files {
			if m, ok := s.Processed[vid][other.name.Name()]; ok && other.name != fw.name {
				marks[other.name.Name()] = m
			}
		}
		s.Processed[vid] = marks
	})
	if err != nil {
		// Only work already done is at stake: the next pass repeats it.
		p.log.Warn("cannot save how far the full pass got", "pool", p.Name, "vid", vid, "file", fw.name, "err", err)
	}
	return nil
}

// reverted is the volume store's revert hook. The image a revert puts in
// place may be one no job went through: a commit's image, saved as a
// revision by a revert before its job ran, which the job then missed.
// Were the mark to follow it, becoming the image again, its jobs would
// carry the mark past that data; so it is left to a full job. Written
// at once: a crash must not let a later revert back bring it back.
func (p *Pool) reverted(vid string) {
	if err := p.state.update(func(s *state) { unexamined(s, vid) }); err != nil {
		p.log.Warn("cannot save that a revert left the volume to a full pass", "pool", p.Name, "vid", vid, "err", err)
	}
}

// removed forgets what the pool's state says of a removed volume: the
// full passes' marks, its examined record, its start generation and its
// cold marks.
func (p *Pool) removed(vid string) {
	p.usage.refreshLater()
	err := p.state.update(func(s *state) {
		delete(s.Processed, vid)
		delete(s.Examined, vid)
		delete(s.Started, vid)
		delete(s.Cold, vid)
	})
	if err != nil {
		// Harmless when kept: marks name inodes, which a new volume of
		// the same name does not reuse; a start records its generation.
		p.log.Warn("cannot drop the state of a removed volume", "pool", p.Name, "vid", vid, "err", err)
	}
}
