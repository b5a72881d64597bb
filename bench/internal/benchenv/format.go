// SPDX-License-Identifier: GPL-2.0-or-later

package benchenv

import (
	"fmt"
	"time"
)

// MiB formats a byte count for a table cell.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Secs formats a duration for a table cell.
func Secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Change formats a byte count before and after.
func Change(from, to int64) string { return fmt.Sprintf("%s -> %s", MiB(from), MiB(to)) }

// Ratio formats n/d, or n/a when d is not positive.
func Ratio(n, d int64) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(n)/float64(d))
}

// Met says whether a target is met.
func Met(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}
