// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

func TestPrintCounters(t *testing.T) {
	counters := api.OptimizerCounters{
		"job_done": 2, "job_failed": 0, "job_bytes_saved": -3 << 20,
		"compress_bytes_examined": 100 << 20, "dedup_hits": 7, "dedup_ioctl_ms": 35,
		"from_a_newer_daemon": 1,
	}
	for _, tt := range []struct {
		name string
		sz   sizes
		want string
	}{
		{"sizes", sizes{}, "\nsince start:\n" +
			"  job: done 2, failed 0, bytes_saved -3.0M\n" +
			"  compress: bytes_examined 100M\n" +
			"  dedup: hits 7, ioctl_ms 35\n"},
		{"bytes", sizes{raw: true}, "\nsince start:\n" +
			"  job: done 2, failed 0, bytes_saved -3145728\n" +
			"  compress: bytes_examined 104857600\n" +
			"  dedup: hits 7, ioctl_ms 35\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printCounters(&out, counters, tt.sz); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("printed\n%q\nwant\n%q", out.String(), tt.want)
			}
		})
	}
}
