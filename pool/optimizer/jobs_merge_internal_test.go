// SPDX-License-Identifier: GPL-2.0-or-later

package optimizer

import (
	"math"
	"slices"
	"testing"
	"time"
)

// A commit's data is optimized only if the job covering it still covers it
// after later requests merge into that job: the merged job keeps the lower
// start generation, every wish either job had (a full pass, a precache),
// the older job's identity, and runs again instead of waiting.
func TestJobMerge(t *testing.T) {
	for _, tt := range jobMergeCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.older.merge(tt.newer); got != tt.want {
				t.Errorf("%+v.merge(%+v)\n got %+v\nwant %+v", tt.older, tt.newer, got, tt.want)
			}
		})
	}
}

const mergeVID = "appvms/work/private"

var (
	mergeQueued = time.Date(2026, 11, 20, 9, 15, 2, 0, time.UTC)
	mergeLater  = mergeQueued.Add(time.Hour)
	mergeOlder  = Job{ID: 3, VID: mergeVID, Since: 100, Queued: mergeQueued}
)

var jobMergeCases = []struct {
	name         string
	older, newer Job
	want         Job
}{
	{
		name:  "newer recorded no start: older generation still covers both",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, DiffRevision: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Queued: mergeQueued},
	},
	{
		name:  "older recorded no start: the newest revision now holds its data, so the whole image",
		older: Job{ID: 3, VID: mergeVID, DiffRevision: true, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Queued: mergeQueued},
	},
	{
		name:  "neither recorded a start: the whole image",
		older: Job{ID: 3, VID: mergeVID, DiffRevision: true, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, DiffRevision: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Queued: mergeQueued},
	},
	{
		name:  "older covers the whole image, newer recorded no start",
		older: Job{ID: 3, VID: mergeVID, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, DiffRevision: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Queued: mergeQueued},
	},
	{
		name:  "newer starts later: older generation covers both",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Queued: mergeQueued},
	},
	{
		name:  "newer starts earlier: its generation covers both",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Since: 50, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 50, Queued: mergeQueued},
	},
	{
		name:  "same generation",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Since: 100, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Queued: mergeQueued},
	},
	{
		name:  "older covers the whole image",
		older: Job{ID: 3, VID: mergeVID, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Queued: mergeQueued},
	},
	{
		name:  "newer covers the whole image",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Queued: mergeQueued},
	},
	{
		name:  "newer at the highest generation",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Since: math.MaxUint64, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Queued: mergeQueued},
	},
	{
		name:  "older at the highest generation",
		older: Job{ID: 3, VID: mergeVID, Since: math.MaxUint64, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, Since: 1, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 1, Queued: mergeQueued},
	},
	{
		name:  "full pass asked by the older job stays",
		older: Job{ID: 3, VID: mergeVID, Full: true, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Full: true, Queued: mergeQueued},
	},
	{
		name:  "full pass asked by the newer job is added",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Full: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Full: true, Queued: mergeQueued},
	},
	{
		name:  "precache left by the older commit stays",
		older: Job{ID: 3, VID: mergeVID, Since: 100, Precache: true, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Precache: true, Queued: mergeQueued},
	},
	{
		name:  "precache left by the newer commit is added",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Precache: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Precache: true, Queued: mergeQueued},
	},
	{
		name:  "every wish of both",
		older: Job{ID: 3, VID: mergeVID, Since: 100, Full: true, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Precache: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Full: true, Precache: true, Queued: mergeQueued},
	},
	{
		name:  "held job runs again after the next commit",
		older: Job{ID: 3, VID: mergeVID, Since: 100, Held: true, Queued: mergeQueued},
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Precache: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Precache: true, Queued: mergeQueued},
	},
	{
		name:  "a held newer job does not hold the merged one",
		older: mergeOlder,
		newer: Job{ID: 9, VID: mergeVID, Since: 200, Held: true, Queued: mergeLater},
		want:  Job{ID: 3, VID: mergeVID, Since: 100, Queued: mergeQueued},
	},
	{
		name: "zero jobs",
		want: Job{},
	},
}

// putJob keeps at most one job per volume: a request for a volume with a
// pending job merges into it in place, any other joins the end of the
// queue.
func TestPutJobMergesOrAppends(t *testing.T) {
	for _, tt := range putJobCases {
		t.Run(tt.name, func(t *testing.T) {
			got, id := putJob(append([]Job(nil), tt.pending...), tt.job, tt.running)
			if id != tt.wantID {
				t.Errorf("id %d, want %d", id, tt.wantID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("jobs\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

var (
	putJobA = Job{ID: 1, VID: "appvms/a/private", Since: 100}
	putJobB = Job{ID: 2, VID: "appvms/b/private", Since: 100}
	putJobC = Job{ID: 3, VID: "appvms/c/private", Since: 100}
)

var putJobCases = []struct {
	name    string
	pending []Job
	job     Job
	running bool
	want    []Job
	wantID  uint64
}{
	{
		name:   "empty queue",
		job:    Job{ID: 9, VID: "appvms/a/private", Since: 50},
		want:   []Job{{ID: 9, VID: "appvms/a/private", Since: 50}},
		wantID: 9,
	},
	{
		name:    "other volumes: appended last",
		pending: []Job{putJobA, putJobB},
		job:     Job{ID: 9, VID: "appvms/c/private", Full: true},
		want:    []Job{putJobA, putJobB, {ID: 9, VID: "appvms/c/private", Full: true}},
		wantID:  9,
	},
	{
		name:    "merged in place, order kept",
		pending: []Job{putJobA, putJobB, putJobC},
		job:     Job{ID: 9, VID: "appvms/b/private", Since: 50, Precache: true},
		want:    []Job{putJobA, {ID: 2, VID: "appvms/b/private", Since: 50, Precache: true}, putJobC},
		wantID:  2,
	},
	{
		name:    "merged into a running job: runs again under the new id",
		pending: []Job{putJobA, putJobB},
		job:     Job{ID: 9, VID: "appvms/a/private", Since: 200},
		running: true,
		want:    []Job{{ID: 9, VID: "appvms/a/private", Since: 100}, putJobB},
		wantID:  9,
	},
	{
		name:    "merged into a held job: released",
		pending: []Job{{ID: 1, VID: "appvms/a/private", Since: 100, Held: true}},
		job:     Job{ID: 9, VID: "appvms/a/private", Since: 200},
		want:    []Job{{ID: 1, VID: "appvms/a/private", Since: 100}},
		wantID:  1,
	},
	{
		name:    "neither has an id",
		pending: []Job{{VID: "appvms/a/private", Since: 100}},
		job:     Job{VID: "appvms/a/private", Since: 200},
		want:    []Job{{VID: "appvms/a/private", Since: 100}},
		wantID:  0,
	},
	{
		name:    "names differing only in the volume",
		pending: []Job{{ID: 1, VID: "appvms/a/root"}},
		job:     Job{ID: 9, VID: "appvms/a/private"},
		want:    []Job{{ID: 1, VID: "appvms/a/root"}, {ID: 9, VID: "appvms/a/private"}},
		wantID:  9,
	},
}
