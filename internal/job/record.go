package job

import (
	"encoding/json"
	"time"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// State is where a job is in its life.
type State string

// Job states. Succeeded, Failed and Cancelled are terminal.
const (
	Pending   State = "pending"
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// Terminal reports whether the job has ended.
func (s State) Terminal() bool { return s == Succeeded || s == Failed || s == Cancelled }

// Stage names, in pipeline order. They are also the values of the "stage" metric label.
const (
	StageResolve     = "resolve"
	StagePlace       = "place"
	StageNetwork     = "network"
	StageClone       = "clone"
	StageInstantiate = "instantiate"
	// StageHydrate copies the disks an instant restore's VM runs from (overlays over its
	// backups) into the volumes' files while it runs, and switches the disks to them
	// (nothing to do for other restores).
	StageHydrate = "hydrate"
	StageCommit  = "commit"
)

// Stages lists the stages in order.
var Stages = []string{StageResolve, StagePlace, StageNetwork, StageClone, StageInstantiate, StageHydrate, StageCommit}

// DefaultTimeout is ZStack's default timeout for CreateVmFromVmBackup (24 hours).
const DefaultTimeout = 24 * time.Hour

// Retention is how long a finished job can still be polled (ZStack keeps 3 hours).
const Retention = 3 * time.Hour

// Record is a job as stored: who asked for what, where it is, and how it ended. Checkpoints
// of the stages are stored beside it (see Checkpoints).
type Record struct {
	UUID        string        `json:"uuid"`
	AccountUUID string        `json:"accountUuid"`
	State       State         `json:"state"`
	Stage       string        `json:"stage,omitempty"`
	Request     *Request      `json:"request"`
	CreatedAt   time.Time     `json:"createdAt"`
	StartedAt   time.Time     `json:"startedAt,omitzero"`
	FinishedAt  time.Time     `json:"finishedAt,omitzero"`
	Timeout     time.Duration `json:"timeout"`
	WebHook     string        `json:"webHook,omitempty"`
	VMUUID      string        `json:"vmUuid,omitempty"`
	// GeneratedVMUUID is the uuid the VM gets when the request names none (resourceUuid),
	// fixed by the job's first attempt.
	GeneratedVMUUID string `json:"-"`
	// Submission is the token of the call that created the job (store.CreateJob sets it):
	// withdrawing a submission removes only the job that call created.
	Submission string            `json:"-"`
	Result     json.RawMessage   `json:"result,omitempty"`
	Error      *zstack.ErrorCode `json:"error,omitempty"`
	// Attempts counts the runs that started anew after a failure or a crash (the first run
	// is attempt 1); HandBacks counts the times a run gave its worker slot back without
	// failing (no free clone slot, Redis unreachable) and came back later.
	Attempts    int       `json:"attempts"`
	HandBacks   int       `json:"handBacks"`
	Progress    *Progress `json:"progress,omitempty"`
	CancelAsked bool      `json:"cancelAsked,omitempty"`
	// Plan and PlanItem name the restore plan item the job runs, if any.
	Plan     string `json:"plan,omitempty"`
	PlanItem int    `json:"planItem,omitempty"`
	// Instant is the course of an instant restore (nil for others).
	Instant     *Instant     `json:"instant,omitempty"`
	Checkpoints *Checkpoints `json:"-"`
	// StageEnded is when each stage that finished last did (the commit stage ends with the
	// job, at FinishedAt): the stage timings of run reports.
	StageEnded map[string]time.Time `json:"-"`
	// Queue is the asynq queue the job's last run came from.
	Queue string `json:"-"`
	// NewAttempt is set on the record StartAttempt returns when the run counted a new
	// attempt (not the continuation of a handed-back one).
	NewAttempt bool `json:"-"`
	// CatalogVersion is the version of the site catalog as StartAttempt found it, read in the
	// same round trip as the record (0 when no catalog was saved).
	CatalogVersion int64 `json:"-"`
	// Op is the life-cycle operation a VM operation job runs (nil for a restore).
	Op *VMOp `json:"op,omitempty"`
}

// Deadline is when the job times out (SYS.1001).
func (r *Record) Deadline() time.Time { return r.CreatedAt.Add(r.Timeout) }

// Progress is the byte progress of the clone stage, rewritten at least every second while
// it runs. Bytes are of the backup files: BytesTotal is their length (the virtual size of a
// raw volume), BytesDone how far the copies got (holes count as done when passed), DataBytes
// the data copied so far (a resumed copy counts what its checkpoint covered) of
// DataBytesTotal (the backups' actualSize), and BytesPerSecond the data rate over the last
// interval.
type Progress struct {
	BytesDone      int64            `json:"bytesDone"`
	BytesTotal     int64            `json:"bytesTotal"`
	DataBytes      int64            `json:"dataBytes,omitempty"`
	DataBytesTotal int64            `json:"dataBytesTotal,omitempty"`
	BytesPerSecond int64            `json:"bytesPerSecond,omitempty"`
	UpdatedAt      time.Time        `json:"updatedAt,omitzero"`
	Volumes        []VolumeProgress `json:"volumes,omitempty"`
}

// VolumeProgress is the progress of one volume's copy.
type VolumeProgress struct {
	UUID       string `json:"uuid"` // the restored volume
	BackupUUID string `json:"backupUuid"`
	BytesDone  int64  `json:"bytesDone"`
	BytesTotal int64  `json:"bytesTotal"`
	DataBytes  int64  `json:"dataBytes"`
	// State is waiting (for a clone slot), copying, done or failed; for an instant restore
	// overlay, hydrating, then hydrated.
	State string `json:"state"`
}

// Checkpoints hold what each finished stage decided, so a re-run reuses it.
type Checkpoints struct {
	Resolved  *Resolved             `json:"resolved,omitempty"`
	Placement *Placement            `json:"placement,omitempty"`
	NICs      []AllocatedNIC        `json:"nics,omitempty"`
	Volumes   map[string]ClonedFile `json:"volumes,omitempty"`
	// Domain is set just before the hypervisor is asked to define the VM: from then on a
	// domain may exist, and compensation must destroy it.
	Domain *DomainRef `json:"domain,omitempty"`
	// Instance is what the hypervisor reported when the instantiate stage finished.
	Instance *Instance `json:"instance,omitempty"`
	// Copies are the last durable positions of volume copies under way (volume uuid → its
	// copy's checkpoint), from which a later run resumes them.
	Copies map[string]CopyCheckpoint `json:"copies,omitempty"`
	Done   []string                  `json:"done,omitempty"`
	// PlaceEnded is when this run's place stage ended while its checkpoint (Placement) is
	// not written yet: it is written with the network stage's, in one round trip. Not
	// stored; a run that stops in between places again, on the same reservation.
	PlaceEnded time.Time `json:"-"`
}

// DomainRef names the host a VM's domain may have been defined on.
type DomainRef struct {
	HostUUID string `json:"hostUuid"`
}

// Instance is the hypervisor's answer for an instantiated VM: its state as read back from
// the host (not assumed from the strategy), and how its boot check passed.
type Instance struct {
	HostUUID  string `json:"hostUuid,omitempty"`
	State     string `json:"state"`
	BootCheck string `json:"bootCheck,omitempty"`
	Driver    string `json:"driver"`
}

// CopyCheckpoint is where a volume copy to InstallPath stood when it last made its progress
// durable (the clone package's checkpoint, as JSON).
type CopyCheckpoint struct {
	InstallPath string          `json:"installPath"`
	State       json.RawMessage `json:"state"`
}

// StageDone reports whether a stage's checkpoint was recorded.
func (c *Checkpoints) StageDone(stage string) bool {
	for _, s := range c.Done {
		if s == stage {
			return true
		}
	}
	return false
}

// Resolved is the VM to build, fixed by the resolve stage: identities, sizes, and the volumes
// and NICs with their new uuids. Everything later stages need from the group and catalog.
type Resolved struct {
	VMUUID               string          `json:"vmUuid"`
	InternalID           int64           `json:"internalId"`
	Name                 string          `json:"name"`
	Description          string          `json:"description,omitempty"`
	Type                 string          `json:"type"`
	ZoneUUID             string          `json:"zoneUuid,omitempty"`
	ClusterUUID          string          `json:"clusterUuid,omitempty"`
	HostUUID             string          `json:"hostUuid,omitempty"`
	InstanceOfferingUUID string          `json:"instanceOfferingUuid,omitempty"`
	CPUNum               int64           `json:"cpuNum"`
	CPUSpeed             int64           `json:"cpuSpeed"`
	MemorySize           int64           `json:"memorySize"`
	ReservedMemorySize   int64           `json:"reservedMemorySize"`
	AllocatorStrategy    string          `json:"allocatorStrategy"`
	PSStrategy           string          `json:"psStrategy"`
	Platform             string          `json:"platform,omitempty"`
	Architecture         string          `json:"architecture,omitempty"`
	GuestOsType          string          `json:"guestOsType,omitempty"`
	ImageUUID            string          `json:"imageUuid,omitempty"`
	SourceHostUUID       string          `json:"sourceHostUuid,omitempty"`
	BackupStorageUUID    string          `json:"backupStorageUuid"`
	DefaultL3NetworkUUID string          `json:"defaultL3NetworkUuid,omitempty"`
	RootPrimaryStorage   string          `json:"rootPrimaryStorageUuid,omitempty"`
	DataPrimaryStorage   string          `json:"dataPrimaryStorageUuid,omitempty"`
	Volumes              []PlannedVolume `json:"volumes"`
	NICs                 []PlannedNIC    `json:"nics"`
	CreateDate           time.Time       `json:"createDate"`
}

// PlannedVolume is a volume to restore from one volume backup.
type PlannedVolume struct {
	UUID             string `json:"uuid"`
	BackupUUID       string `json:"backupUuid"`
	SourceVolumeUUID string `json:"sourceVolumeUuid,omitempty"`
	Name             string `json:"name"`
	Type             string `json:"type"`
	DeviceID         int    `json:"deviceId"`
	Format           string `json:"format"`
	Size             int64  `json:"size"`
	BackupActualSize int64  `json:"backupActualSize"`
	File             string `json:"file"`
	ChecksumAlgo     string `json:"checksumAlgorithm"`
	Checksum         string `json:"checksum"`
}

// PlannedNIC is a NIC to create: the request's wishes plus the uuids it will carry.
type PlannedNIC struct {
	NIC
	UUID       string `json:"uuid"`
	UsedIPUUID string `json:"usedIpUuid"`
	DeviceID   int    `json:"deviceId"`
}

// Owner is the key under which a NIC's IP and MAC are held; it makes allocation idempotent.
func (n PlannedNIC) Owner(jobUUID string) string { return jobUUID + "/" + n.UUID }

// Placement is where the place stage put the VM and its volumes.
type Placement struct {
	HostUUID          string            `json:"hostUuid"`
	ClusterUUID       string            `json:"clusterUuid"`
	ZoneUUID          string            `json:"zoneUuid"`
	AllocatorStrategy string            `json:"allocatorStrategy"`
	VolumeStorage     map[string]string `json:"volumeStorage"` // volume uuid → primary storage uuid
}

// AllocatedNIC is a NIC with its address and MAC.
type AllocatedNIC struct {
	PlannedNIC
	IP          string `json:"ip,omitempty"`
	IPInLong    int64  `json:"ipInLong,omitempty"`
	IPRangeUUID string `json:"ipRangeUuid,omitempty"`
	Netmask     string `json:"netmask,omitempty"`
	Gateway     string `json:"gateway,omitempty"`
	Mac         string `json:"mac"`
}

// ClonedFile is a restored volume file.
type ClonedFile struct {
	InstallPath string `json:"installPath"`
	ActualSize  int64  `json:"actualSize"`
	// Backing is set for an instant restore: until Hydrated, the VM runs from a qcow2
	// overlay over it beside InstallPath (overlay.PathOf), and InstallPath is the qcow2 file
	// the hydrate stage copies the disk into.
	Backing *Backing `json:"backing,omitempty"`
	// Hydrated tells an instant restore's volume whose VM runs from InstallPath alone (its
	// copy ended in its pivot): the VM no longer reads its overlay or Backing, and a re-run
	// must not put them back in the chain.
	Hydrated bool `json:"hydrated,omitempty"`
}

// RunsFromBacking reports whether the volume's VM still reads its backup: an instant
// restore's overlay not yet hydrated.
func (f ClonedFile) RunsFromBacking() bool { return f.Backing != nil && !f.Hydrated }

// Answer is the body ZStack answers for a finished job, on a poll and to a web hook:
// {"inventory": ...} when it succeeded, {"error": ...} otherwise.
func Answer(state State, result json.RawMessage, e *zstack.ErrorCode) (body []byte, success bool) {
	if state == Succeeded && len(result) == 0 {
		return []byte("{}"), true // an operation that answers no inventory (destroy, expunge)
	}
	if state == Succeeded {
		b, _ := json.Marshal(map[string]json.RawMessage{"inventory": result})
		return b, true
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return b, false
}
