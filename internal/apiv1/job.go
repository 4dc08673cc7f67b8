package apiv1

import (
	"time"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Job is a restore job as the native API shows it (GET /api/v1/jobs/{uuid}, and POST
// /api/v1/jobs/{uuid}/cancel).
type Job struct {
	UUID  string `json:"uuid"`
	State string `json:"state"`
	// Operation is the VM life-cycle operation the job runs (DestroyVmInstance, ...); empty
	// for a restore.
	Operation  string            `json:"operation,omitempty"`
	Stage      string            `json:"stage,omitempty"`
	GroupUUID  string            `json:"groupUuid"`
	Name       string            `json:"name"`
	VMUUID     string            `json:"vmUuid,omitempty"`
	PlanUUID   string            `json:"planUuid,omitempty"`
	PlanItem   *int              `json:"planItem,omitempty"`
	Attempts   int               `json:"attempts"`
	HandBacks  int               `json:"handBacks"`
	CreatedAt  time.Time         `json:"createdAt"`
	StartedAt  *time.Time        `json:"startedAt,omitempty"`
	FinishedAt *time.Time        `json:"finishedAt,omitempty"`
	Progress   *JobProgress      `json:"progress,omitempty"`
	Cancel     bool              `json:"cancelRequested,omitempty"`
	Error      *zstack.ErrorCode `json:"error,omitempty"`
	// Instant is an instant restore's course: when its VM ran, when it was hydrated.
	Instant *JobInstant `json:"instant,omitempty"`
	// Outcome is how a succeeded job ended when State alone does not say it all: Hydrated
	// for an instant restore (its VM ran from its backups and now stands alone). State stays
	// succeeded, as ZStack and every client that waits for the end expect.
	Outcome string `json:"outcome,omitempty"`
}

// OutcomeHydrated is the outcome of a succeeded instant restore.
const OutcomeHydrated = "Hydrated"

// JobInstant is the course of an instant restore: Running (the VM runs from its backups,
// the data is being pulled in) since RunningAt, then Hydrated at HydratedAt, or Failed.
type JobInstant struct {
	State      string     `json:"state"`
	RunningAt  *time.Time `json:"runningAt,omitempty"`
	HydratedAt *time.Time `json:"hydratedAt,omitempty"`
}

// JobProgress is the byte progress of a job's copies, rewritten at least every second while
// they run. Bytes are of the backup files: BytesTotal is their length (the virtual size of a
// raw volume), BytesDone how far the copies got (holes count as done when passed), DataBytes
// the data copied so far of DataBytesTotal (the backups' actualSize), and BytesPerSecond the
// data rate over the last interval.
type JobProgress struct {
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
	// State is waiting (for a clone slot), copying, done or failed; for an instant
	// restore's overlay, hydrating, then hydrated.
	State string `json:"state"`
}
