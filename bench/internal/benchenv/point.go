// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"context"
	"fmt"

	"github.com/btrfs-vdo/btrfs-vdo/bench/corpus"
	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// pairs lists each volume's image with its newest revision.
func pairs(c *corpus.Corpus) ([]pair, error) {
	var out []pair
	for _, v := range c.Volumes {
		p, err := volume.PathsFor(v.VID)
		if err != nil {
			return nil, err
		}
		revs, err := c.Revisions(v.VID)
		if err != nil {
			return nil, err
		}
		if len(revs) == 0 {
			return nil, fmt.Errorf("%s has no revision", v.VID)
		}
		out = append(out, pair{v.VID, c.Path(p.Clean), revs[len(revs)-1].Path})
	}
	return out, nil
}

// Point measures the side's filesystem mnt. running maps the image of a
// started volume to its dirty image: that pair is measured instead, since
// the commit turns the image into the revision and the dirty image into
// the image.
func Point(ctx context.Context, mnt string, c *corpus.Corpus, running map[string]string) (Usage, error) {
	ps, err := pairs(c)
	if err != nil {
		return Usage{}, err
	}
	for i, p := range ps {
		if dirty, ok := running[p.image]; ok {
			ps[i] = pair{p.vid, dirty, p.image}
		}
	}
	return measure(ctx, mnt, c.VolumeDirs(), ps)
}
