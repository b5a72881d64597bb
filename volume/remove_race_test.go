// SPDX-License-Identifier: GPL-2.0-or-later

package volume_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/volume"
)

// TestConcurrentRemovalOfSiblings: qubesd removes a VM's volumes all at
// once. Whichever removal empties the directory first removes it; the
// others, and a second removal of each, must still succeed, and a volume
// created or started in the same directory meanwhile must keep its files.
// The race is in the scheduling, so it takes rounds to meet it.
func TestConcurrentRemovalOfSiblings(t *testing.T) {
	h := newHarness(t)
	const volumes = 4
	for round := range 60 {
		vm := fmt.Sprintf("appvms/vm%d", round)
		specs := make([]volume.Spec, volumes)
		for i := range specs {
			specs[i] = origin(fmt.Sprintf("%s/vol%d", vm, i), 1)
			h.must(h.store.Create(specs[i]))
		}
		keep := origin(vm+"/kept", 1)
		var wg sync.WaitGroup
		errs := make(chan error, 2*volumes+2)
		for _, spec := range specs {
			wg.Add(2)
			for range 2 {
				go func() {
					defer wg.Done()
					_, err := h.store.Remove(spec)
					errs <- err
				}()
			}
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := h.store.Create(keep)
			errs <- err
		}()
		go func() { // a start makes the files of a volatile volume
			defer wg.Done()
			_, err := h.store.Start(volume.Spec{VID: vm + "/volatile", RW: true, Size: mib})
			errs <- err
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if !h.exists(keep.VID + ".img") {
			t.Fatalf("round %d: the volume created meanwhile lost its image", round)
		}
		h.must(h.store.Remove(keep))
		h.must(h.store.Remove(volume.Spec{VID: vm + "/volatile", RW: true, Size: mib}))
		if _, err := os.Stat(h.path(vm)); !os.IsNotExist(err) {
			t.Fatalf("round %d: %s is still there (%v)", round, vm, err)
		}
	}
}
