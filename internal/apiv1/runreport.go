package apiv1

import "time"

// RunReport is what a plan's run achieved, for the operator and the auditor (GET
// /api/v1/plans/{uuid}/report): who started it and when, the achieved RTO (submission to
// the last VM verified running: its job ended, after its boot check when it had one) per
// VM, per tier and overall, each VM's stage timings, data bytes, boot check and failure,
// and, after a drill's cleanup, what the cleanup freed. It is stored when the plan ends and
// kept after cleanup, for VMRESTORE_REPORT_RETENTION.
type RunReport struct {
	PlanUUID string `json:"planUuid"`
	PlanName string `json:"planName"`
	// Mode is recovery or drill.
	Mode   string `json:"mode"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// StartedBy is the name of the account that submitted the plan.
	StartedBy            string     `json:"startedBy"`
	StartedByAccountUUID string     `json:"startedByAccountUuid"`
	SubmittedAt          time.Time  `json:"submittedAt"`
	FinishedAt           *time.Time `json:"finishedAt,omitempty"`
	GeneratedAt          time.Time  `json:"generatedAt"`
	// RTOSeconds is submission to the last VM verified running, absent when none was.
	RTOSeconds *float64       `json:"rtoSeconds,omitempty"`
	ItemCount  int            `json:"itemCount"`
	Counts     map[string]int `json:"counts"`
	// DataBytes is the backup data restored (what the restores read and wrote).
	DataBytes    int64           `json:"dataBytes"`
	TestNetworks []TestNetwork   `json:"testNetworks,omitempty"`
	Tiers        []RunReportTier `json:"tiers"`
	VMs          []RunReportVM   `json:"vms"`
	// Cleanup is the plan's last cleanup (a drill's, after its hold): the VMs it destroyed
	// and expunged and what that freed.
	Cleanup *PlanCleanup `json:"cleanup,omitempty"`
}

// RunReportTier is one tier's outcome: its RTO is submission to its last VM verified
// running (absent when none was); Complete says whether every VM of the tier was.
type RunReportTier struct {
	Tier       int            `json:"tier"`
	ItemCount  int            `json:"itemCount"`
	Counts     map[string]int `json:"counts"`
	Complete   bool           `json:"complete"`
	StartedAt  *time.Time     `json:"startedAt,omitempty"`
	EndedAt    *time.Time     `json:"endedAt,omitempty"`
	RTOSeconds *float64       `json:"rtoSeconds,omitempty"`
	DataBytes  int64          `json:"dataBytes"`
}

// RunReportVM is one item of the plan: the VM restored (or why not), with the timings of
// its last attempt's job.
type RunReportVM struct {
	Index     int    `json:"index"`
	Tier      int    `json:"tier"`
	Name      string `json:"name"`
	GroupUUID string `json:"groupUuid"`
	VMUUID    string `json:"vmUuid,omitempty"`
	JobUUID   string `json:"jobUuid,omitempty"`
	HostUUID  string `json:"hostUuid,omitempty"`
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	// QueuedAt is when the item's job was created, StartedAt when a worker took it, and
	// FinishedAt when it ended.
	QueuedAt   *time.Time `json:"queuedAt,omitempty"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// RTOSeconds is the plan's submission to this VM verified running.
	RTOSeconds   *float64         `json:"rtoSeconds,omitempty"`
	Stages       []RunReportStage `json:"stages,omitempty"`
	DataBytes    int64            `json:"dataBytes"`
	VirtualBytes int64            `json:"virtualBytes"`
	// BootCheck is the check asked ("running", "guestAgent", "console:<regex>"), and
	// BootCheckResult how it passed, or why it failed.
	BootCheck       string `json:"bootCheck,omitempty"`
	BootCheckResult string `json:"bootCheckResult,omitempty"`
	ErrorCode       string `json:"errorCode,omitempty"`
	Error           string `json:"error,omitempty"`
}

// RunReportStage is how long one stage of a VM's job took.
type RunReportStage struct {
	Stage     string    `json:"stage"`
	StartedAt time.Time `json:"startedAt"`
	Seconds   float64   `json:"seconds"`
}

// RunReportSummary is a stored report in GET /api/v1/reports: the plan, its outcome and
// its RTOs, without the VMs.
type RunReportSummary struct {
	PlanUUID    string         `json:"planUuid"`
	PlanName    string         `json:"planName"`
	Mode        string         `json:"mode"`
	State       string         `json:"state"`
	StartedBy   string         `json:"startedBy"`
	SubmittedAt time.Time      `json:"submittedAt"`
	FinishedAt  *time.Time     `json:"finishedAt,omitempty"`
	RTOSeconds  *float64       `json:"rtoSeconds,omitempty"`
	ItemCount   int            `json:"itemCount"`
	Counts      map[string]int `json:"counts"`
	Tiers       []TierRTO      `json:"tiers"`
	// Freed is what the plan's cleanup freed, once it has ended.
	Freed *CleanupFreed `json:"freed,omitempty"`
}

// TierRTO is a tier's RTO in a report summary.
type TierRTO struct {
	Tier       int      `json:"tier"`
	Complete   bool     `json:"complete"`
	RTOSeconds *float64 `json:"rtoSeconds,omitempty"`
}

// RunReportList is GET /api/v1/reports: the stored reports the session may see, newest
// first.
type RunReportList struct {
	Reports []RunReportSummary `json:"reports"`
}

// Summary is the report without its VMs.
func (r *RunReport) Summary() RunReportSummary {
	s := RunReportSummary{PlanUUID: r.PlanUUID, PlanName: r.PlanName, Mode: r.Mode, State: r.State, StartedBy: r.StartedBy,
		SubmittedAt: r.SubmittedAt, FinishedAt: r.FinishedAt, RTOSeconds: r.RTOSeconds, ItemCount: r.ItemCount, Counts: r.Counts,
		Tiers: make([]TierRTO, 0, len(r.Tiers))}
	for _, t := range r.Tiers {
		s.Tiers = append(s.Tiers, TierRTO{Tier: t.Tier, Complete: t.Complete, RTOSeconds: t.RTOSeconds})
	}
	if r.Cleanup != nil && r.Cleanup.State != CleanupRunning {
		f := r.Cleanup.Freed
		s.Freed = &f
	}
	return s
}

// Succeeded reports whether every VM of the run was restored.
func (s *RunReportSummary) Succeeded() bool { return s.State == "succeeded" }
