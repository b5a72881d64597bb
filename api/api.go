// SPDX-License-Identifier: GPL-2.0-or-later

package api

import "encoding/json"

// ProtocolVersion is the version every request carries in "v".
const ProtocolVersion = 1

// MaxFrameBytes bounds one request or response line, so a hostile or broken
// client cannot make the daemon buffer without limit.
const MaxFrameBytes = 1 << 20

// DefaultSocket is where btrfs-vdod listens unless told otherwise.
const DefaultSocket = "/run/btrfs-vdo/btrfs-vdod.sock"

// SocketEnv names the environment variable that overrides DefaultSocket for
// the shim and the CLI.
const SocketEnv = "BTRFS_VDO_SOCKET"

// Op names one operation.
type Op string

// Operations, each with its argument and result type in Ops.
const (
	OpHello               Op = "hello"
	OpStatus              Op = "status"
	OpPoolSetup           Op = "pool.setup"
	OpVolumeCreate        Op = "volume.create"
	OpVolumeRemove        Op = "volume.remove"
	OpVolumeVerify        Op = "volume.verify"
	OpVolumeStart         Op = "volume.start"
	OpVolumeStop          Op = "volume.stop"
	OpVolumeInfo          Op = "volume.info"
	OpVolumeRevert        Op = "volume.revert"
	OpVolumeResize        Op = "volume.resize"
	OpVolumeExport        Op = "volume.export"
	OpVolumeExportEnd     Op = "volume.export_end"
	OpVolumeImportData    Op = "volume.import_data"
	OpVolumeImportDataEnd Op = "volume.import_data_end"
	OpVolumeImportVolume  Op = "volume.import_volume"
	OpOptimize            Op = "optimize"
	OpJobs                Op = "jobs"
	OpStats               Op = "stats"
)

// OpTypes pairs an operation with the Go types of its arguments and result.
type OpTypes struct {
	Args   any
	Result any
}

// Ops lists every operation with zero values of its argument and result
// types. The daemon's handler table and the schema are both checked
// against it.
var Ops = map[Op]OpTypes{
	OpHello:               {HelloArgs{}, HelloResult{}},
	OpStatus:              {StatusArgs{}, StatusResult{}},
	OpPoolSetup:           {PoolSetupArgs{}, PoolSetupResult{}},
	OpVolumeCreate:        {VolumeArgs{}, VolumeState{}},
	OpVolumeRemove:        {VolumeArgs{}, VolumeState{}},
	OpVolumeVerify:        {VolumeArgs{}, VolumeState{}},
	OpVolumeStart:         {VolumeArgs{}, VolumeState{}},
	OpVolumeStop:          {VolumeArgs{}, VolumeState{}},
	OpVolumeInfo:          {VolumeArgs{}, VolumeState{}},
	OpVolumeRevert:        {RevertArgs{}, VolumeState{}},
	OpVolumeResize:        {ResizeArgs{}, VolumeState{}},
	OpVolumeExport:        {VolumeArgs{}, PathResult{}},
	OpVolumeExportEnd:     {ExportEndArgs{}, VolumeState{}},
	OpVolumeImportData:    {ImportDataArgs{}, PathResult{}},
	OpVolumeImportDataEnd: {ImportDataEndArgs{}, VolumeState{}},
	OpVolumeImportVolume:  {ImportVolumeArgs{}, VolumeState{}},
	OpOptimize:            {OptimizeArgs{}, OptimizeResult{}},
	OpJobs:                {JobsArgs{}, JobsResult{}},
	OpStats:               {StatsArgs{}, StatsResult{}},
}

// AdminOps are the ops only the btrfs-vdo CLI sends; the qubesd driver
// sends every other op.
var AdminOps = []Op{OpStatus, OpOptimize, OpJobs, OpStats}

// Request is one line sent by a client.
type Request struct {
	V    int             `json:"v"`
	Op   Op              `json:"op"`
	Args json.RawMessage `json:"args"`
}

// Response is the daemon's one line of answer. Exactly one of Result and
// Error is set, as OK says.
type Response struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Error is a failure with a stable code and a message meant for the user,
// shaped like "Cannot revert: appvms/work/private is not cleanly stopped".
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// HelloArgs opens a conversation; Client names the caller for the log.
type HelloArgs struct {
	Client string `json:"client"`
}

// HelloResult tells the client what it is talking to.
type HelloResult struct {
	Protocol int    `json:"protocol"`
	Daemon   string `json:"daemon"`
}

// StatusArgs asks for the daemon's state.
type StatusArgs struct{}

// StatusResult describes the running daemon.
type StatusResult struct {
	Protocol      int          `json:"protocol"`
	Daemon        string       `json:"daemon"`
	UptimeSeconds int64        `json:"uptime_seconds"`
	Requests      uint64       `json:"requests"`
	Pools         []PoolStatus `json:"pools"`
}

// PoolStatus describes one pool the daemon has served since it started.
type PoolStatus struct {
	Name      string `json:"name"`
	DirPath   string `json:"dir_path"`
	SizeBytes int64  `json:"size_bytes"`
	UsedBytes int64  `json:"used_bytes"`
	Commits   uint64 `json:"commits"`
}

// Pool identifies a pool. DirPath is absolute.
type Pool struct {
	Name    string `json:"name"`
	DirPath string `json:"dir_path"`
}

// PoolSetupArgs asks the daemon to create a pool's directories and check
// that its filesystem supports reflinks (unless SetupCheck is false).
type PoolSetupArgs struct {
	Pool       Pool `json:"pool"`
	SetupCheck bool `json:"setup_check"`
}

// PoolSetupResult reports what setup found.
type PoolSetupResult struct {
	Btrfs    bool `json:"btrfs"`
	Reflinks bool `json:"reflinks"`
}

// Volume is a volume's configuration as qubesd holds it right now.
// Source is the vid of the volume a snapshot is taken from, in the same
// pool, or "" when there is none.
type Volume struct {
	VID             string `json:"vid"`
	RW              bool   `json:"rw"`
	SaveOnStop      bool   `json:"save_on_stop"`
	SnapOnStart     bool   `json:"snap_on_start"`
	RevisionsToKeep int    `json:"revisions_to_keep"`
	Size            int64  `json:"size"`
	Source          string `json:"source"`
}

// VolumeArgs names a volume in a pool; most operations need nothing else.
type VolumeArgs struct {
	Pool   Pool   `json:"pool"`
	Volume Volume `json:"volume"`
}

// RevertArgs reverts to Revision, or to the newest revision when it is "".
type RevertArgs struct {
	Pool     Pool   `json:"pool"`
	Volume   Volume `json:"volume"`
	Revision string `json:"revision"`
}

// ResizeArgs sets a volume's size in bytes.
type ResizeArgs struct {
	Pool   Pool   `json:"pool"`
	Volume Volume `json:"volume"`
	Size   int64  `json:"size"`
}

// ExportEndArgs releases a path returned by volume.export.
type ExportEndArgs struct {
	Pool   Pool   `json:"pool"`
	Volume Volume `json:"volume"`
	Path   string `json:"path"`
}

// ImportDataArgs asks for a zero-filled file of Size bytes to write into.
type ImportDataArgs struct {
	Pool   Pool   `json:"pool"`
	Volume Volume `json:"volume"`
	Size   int64  `json:"size"`
}

// ImportDataEndArgs commits (Success) or discards a pending import.
type ImportDataEndArgs struct {
	Pool    Pool   `json:"pool"`
	Volume  Volume `json:"volume"`
	Success bool   `json:"success"`
}

// ImportVolumeArgs copies the committed data found at SourcePath (the
// result of the source volume's export, from any driver) into the volume
// and commits it.
type ImportVolumeArgs struct {
	Pool       Pool   `json:"pool"`
	Volume     Volume `json:"volume"`
	SourcePath string `json:"source_path"`
}

// PathResult carries a path handed to qubesd.
type PathResult struct {
	Path string `json:"path"`
}

// Revision is one saved state of a volume. ID is the decimal revision
// number; Timestamp is UTC "YYYY-MM-DDTHH:MM:SS".
type Revision struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
}

// VolumeState is what the daemon saw of a volume after an operation.
type VolumeState struct {
	Size      int64      `json:"size"`
	Usage     int64      `json:"usage"`
	Dirty     bool       `json:"dirty"`
	Revisions []Revision `json:"revisions"`
}

// Target names what optimize and stats work on: a pool (its name, or its
// directory), a VM (its name, in every pool), or one volume ("POOL:VID").
// Only pools the daemon knows are targets: those set up through it or
// used by qubesd since it started, and a directory holding a pool's
// layout and the daemon's state from before a restart. Anything else,
// and a VM or volume that does not exist, is CodeUnknownTarget; naming a
// directory never makes it a pool.

// OptimizeArgs queues optimization of every origin volume in Target,
// templates first. Full also rewrites extents shared with revisions and
// precaches, and the revisions themselves, each file from where the last
// full pass through it stopped; otherwise only what is new since the last
// optimization is examined. Cold instead recompresses at the cold level
// every compressed extent (and uncompressed one files reference only in
// part) of the images and revisions not yet through a cold pass, whatever its age; a volume with a job pending gets it after
// that job. Full and Cold together are CodeBadRequest.
type OptimizeArgs struct {
	Target string `json:"target"`
	Full   bool   `json:"full"`
	Cold   bool   `json:"cold"`
}

// OptimizeResult lists the jobs queued, one per volume, in the order they
// run.
type OptimizeResult struct {
	Queued []QueuedJob `json:"queued"`
}

// QueuedJob names the job that covers one volume of an optimize request.
// Its outcome, in JobsResult.Recent, carries the same ID. A request for a
// volume whose job is still queued joins that job and gets its ID.
type QueuedJob struct {
	VolumeRef
	ID uint64 `json:"id"`
}

// VolumeRef names a volume in a pool.
type VolumeRef struct {
	Pool    string `json:"pool"`
	DirPath string `json:"dir_path"`
	VID     string `json:"vid"`
}

// JobsArgs asks for the optimizer's jobs.
type JobsArgs struct{}

// JobsResult lists pending jobs, recently finished ones and the totals.
type JobsResult struct {
	Paused   bool              `json:"paused"`
	Jobs     []JobInfo         `json:"jobs"`
	Recent   []JobOutcome      `json:"recent"`
	Counters OptimizerCounters `json:"counters"`
}

// JobState is where a pending job stands.
type JobState string

// The states of a pending job.
const (
	JobQueued  JobState = "queued"  // waits for a worker
	JobRunning JobState = "running" // a worker runs it
	JobHeld    JobState = "held"    // its volume started; it waits for the next commit
	JobPaused  JobState = "paused"  // queued while the optimizer is paused
)

// JobInfo is a pending job.
type JobInfo struct {
	VolumeRef
	ID         uint64   `json:"id"`
	State      JobState `json:"state"`
	DoneBytes  uint64   `json:"done_bytes"`
	TotalBytes uint64   `json:"total_bytes"`
	Queued     string   `json:"queued"`
}

// JobOutcome is a finished job.
type JobOutcome struct {
	VolumeRef
	ID              uint64 `json:"id"`
	Finished        string `json:"finished"`
	BytesExamined   uint64 `json:"bytes_examined"`
	BytesCompressed uint64 `json:"bytes_compressed"`
	BytesSaved      int64  `json:"bytes_saved"`
	SkippedShared   uint64 `json:"skipped_shared"`
	Error           string `json:"error"`
}

// OptimizerCounters are the optimizer's counters, totals since the daemon
// started, by the names docs/counters.md lists (job_done, dedup_hits, …).
// A time (a name ending in _ms) is in milliseconds.
type OptimizerCounters map[string]int64

// StatsArgs asks for space figures of Target ("" for every known pool).
type StatsArgs struct {
	Target string `json:"target"`
}

// StatsResult has one row per volume, per VM and per pool, each measured
// as a set: an extent shared inside the set counts once.
type StatsResult struct {
	Volumes []UsageRow `json:"volumes"`
	VMs     []UsageRow `json:"vms"`
	Pools   []UsageRow `json:"pools"`
}

// UsageRow is compsize's view of a set of files plus what the set shares
// with files outside it.
type UsageRow struct {
	Name              string      `json:"name"`
	Files             uint64      `json:"files"`
	DiskBytes         uint64      `json:"disk_bytes"`
	UncompressedBytes uint64      `json:"uncompressed_bytes"`
	ReferencedBytes   uint64      `json:"referenced_bytes"`
	SharedBytes       uint64      `json:"shared_bytes"`
	ExclusiveBytes    uint64      `json:"exclusive_bytes"`
	ByType            []TypeUsage `json:"by_type"`
}

// TypeUsage is one compression type's share of a UsageRow.
type TypeUsage struct {
	Type              string `json:"type"`
	DiskBytes         uint64 `json:"disk_bytes"`
	UncompressedBytes uint64 `json:"uncompressed_bytes"`
	ReferencedBytes   uint64 `json:"referenced_bytes"`
}

// Target names the volume a request is about; every argument type of a
// volume op has one, so the daemon resolves them all the same way.
func (a VolumeArgs) Target() (Pool, Volume) { return a.Pool, a.Volume }

// Target names the volume to revert.
func (a RevertArgs) Target() (Pool, Volume) { return a.Pool, a.Volume }

// Target names the volume to resize.
func (a ResizeArgs) Target() (Pool, Volume) { return a.Pool, a.Volume }

// Target names the exported volume.
func (a ExportEndArgs) Target() (Pool, Volume) { return a.Pool, a.Volume }

// Target names the volume imported into.
func (a ImportDataArgs) Target() (Pool, Volume) { return a.Pool, a.Volume }

// Target names the volume imported into.
func (a ImportDataEndArgs) Target() (Pool, Volume) { return a.Pool, a.Volume }

// Target names the volume imported into.
func (a ImportVolumeArgs) Target() (Pool, Volume) { return a.Pool, a.Volume }
