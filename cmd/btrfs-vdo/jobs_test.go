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
			"  job: bytes_saved -3.0M, done 2, failed 0\n" +
			"  dedup: hits 7, ioctl_ms 35\n" +
			"  compress: bytes_examined 100M\n" +
			"  from: a_newer_daemon 1\n"},
		{"bytes", sizes{raw: true}, "\nsince start:\n" +
			"  job: bytes_saved -3145728, done 2, failed 0\n" +
			"  dedup: hits 7, ioctl_ms 35\n" +
			"  compress: bytes_examined 104857600\n" +
			"  from: a_newer_daemon 1\n"},
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
