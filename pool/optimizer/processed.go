// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

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

// sinceFor is the generation from which job works on the extents of the
// volume's file, inode ino: for a full job, the file's mark; for
// any other job, or a file without a mark, the job's own Since. A
// commit, revert or resize puts another inode under the name, and a
// revision of another name on the inode, so neither is taken for done.
func (p *Pool) sinceFor(job Job, file volume.File, ino uint64) uint64 {
	m, ok := p.state.read().Processed[job.VID][file.Name()]
	if !job.Full || !ok || m.Inode != ino {
		return job.Since
	}
	return m.Generation
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

// removed forgets what the pool's state says of a removed volume: the
// full passes' marks, its start generation and its cold marks.
func (p *Pool) removed(vid string) {
	p.usage.refreshLater()
	err := p.state.update(func(s *state) {
		delete(s.Processed, vid)
		delete(s.Started, vid)
		delete(s.Cold, vid)
	})
	if err != nil {
		// Harmless when kept: marks name inodes, which a new volume of
		// the same name does not reuse; a start records its generation.
		p.log.Warn("cannot drop the state of a removed volume", "pool", p.Name, "vid", vid, "err", err)
	}
}
