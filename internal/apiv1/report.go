package apiv1

import "time"

// PlanReport is a plan's progress: counts by state, bytes, throughput and ETA, per tier and
// per item, as GET /api/v1/plans/{uuid} answers it. Bytes are backup data, what a restore
// reads and writes (bytesDone, bytesTotal; throughput and ETA are measured on them); the
// volumes' virtual sizes, where holes pass at once, are beside them (virtualBytesDone,
// virtualBytesTotal).
type PlanReport struct {
	UUID                     string         `json:"uuid"`
	Name                     string         `json:"name"`
	State                    string         `json:"state"`
	Reason                   string         `json:"reason,omitempty"`
	CreatedAt                time.Time      `json:"createdAt"`
	FinishedAt               *time.Time     `json:"finishedAt,omitempty"`
	Concurrency              int            `json:"concurrency"`
	ItemCount                int            `json:"itemCount"`
	Counts                   map[string]int `json:"counts"`
	BytesDone                int64          `json:"bytesDone"`
	BytesTotal               int64          `json:"bytesTotal"`
	VirtualBytesDone         int64          `json:"virtualBytesDone"`
	VirtualBytesTotal        int64          `json:"virtualBytesTotal"`
	ThroughputBytesPerSecond float64        `json:"throughputBytesPerSecond"`
	EtaSeconds               *float64       `json:"etaSeconds,omitempty"`
	// RunningFromBackups counts the instant items whose VM runs while its data is pulled in
	// (their job's hydrate stage); they count as running in Counts until hydrated, then as
	// succeeded.
	RunningFromBackups int          `json:"runningFromBackups,omitempty"`
	Tiers              []TierReport `json:"tiers"`
	Items              []ItemReport `json:"items,omitempty"`
	// Cleanup is the plan's last cleanup, if it had one.
	Cleanup *PlanCleanup `json:"cleanup,omitempty"`
}

// TierReport is one tier's progress.
type TierReport struct {
	Tier              int            `json:"tier"`
	Counts            map[string]int `json:"counts"`
	BytesDone         int64          `json:"bytesDone"`
	BytesTotal        int64          `json:"bytesTotal"`
	VirtualBytesDone  int64          `json:"virtualBytesDone"`
	VirtualBytesTotal int64          `json:"virtualBytesTotal"`
}

// ItemReport is one item: which group, where it is, and why it failed.
type ItemReport struct {
	Index      int    `json:"index"`
	Tier       int    `json:"tier"`
	GroupUUID  string `json:"groupUuid"`
	Name       string `json:"name"`
	State      string `json:"state"`
	Stage      string `json:"stage,omitempty"`
	JobUUID    string `json:"jobUuid,omitempty"`
	VMUUID     string `json:"vmUuid,omitempty"`
	Attempt    int    `json:"attempt,omitempty"`
	BytesDone  int64  `json:"bytesDone"`
	BytesTotal int64  `json:"bytesTotal"`
	// VirtualBytesDone and VirtualBytesTotal are the volumes' virtual sizes.
	VirtualBytesDone  int64  `json:"virtualBytesDone"`
	VirtualBytesTotal int64  `json:"virtualBytesTotal"`
	ErrorCode         string `json:"errorCode,omitempty"`
	Error             string `json:"error,omitempty"`
}

// PlanList is GET /api/v1/plans: the plans the session may see, newest first, without items.
type PlanList struct {
	Plans []PlanReport `json:"plans"`
}

// PlanRetried is POST /api/v1/plans/{uuid}/retry: how many items were requeued, and the plan.
type PlanRetried struct {
	Retried int         `json:"retried"`
	Plan    *PlanReport `json:"plan"`
}
