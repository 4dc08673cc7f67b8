package apiv1

import (
	"time"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Job is a restore job as the native API shows it (GET /api/v1/jobs/{uuid}).
type Job struct {
	UUID       string            `json:"uuid"`
	State      string            `json:"state"`
	Stage      string            `json:"stage,omitempty"`
	GroupUUID  string            `json:"groupUuid"`
	Name       string            `json:"name"`
	VMUUID     string            `json:"vmUuid,omitempty"`
	Plan       string            `json:"planUuid,omitempty"`
	PlanItem   *int              `json:"planItem,omitempty"`
	Attempts   int               `json:"attempts"`
	HandBacks  int               `json:"handBacks"`
	CreatedAt  time.Time         `json:"createdAt"`
	StartedAt  *time.Time        `json:"startedAt,omitempty"`
	FinishedAt *time.Time        `json:"finishedAt,omitempty"`
	Progress   any               `json:"progress,omitempty"`
	Cancel     bool              `json:"cancelRequested,omitempty"`
	Error      *zstack.ErrorCode `json:"error,omitempty"`
}
