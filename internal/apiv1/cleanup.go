package apiv1

import (
	"time"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// PlanCleanup is the cleanup of a plan (POST /api/v1/plans/{uuid}/cleanup, and the cleanup
// field of GET /api/v1/plans/{uuid}): every VM the plan created destroyed and expunged, in
// reverse tier order, and what that freed.
type PlanCleanup struct {
	UUID       string       `json:"uuid"`
	PlanUUID   string       `json:"planUuid"`
	State      string       `json:"state"` // running, succeeded, failed
	Reason     string       `json:"reason,omitempty"`
	StartedAt  time.Time    `json:"startedAt"`
	FinishedAt *time.Time   `json:"finishedAt,omitempty"`
	VMs        []CleanupVM  `json:"vms"`
	Freed      CleanupFreed `json:"freed"`
}

// Cleanup states, and the states of its VMs.
const (
	CleanupRunning   = "running"
	CleanupSucceeded = "succeeded"
	CleanupFailed    = "failed"
	// A VM waits (pending), is being expunged (expunging: what it holds is counted), was
	// expunged, was gone already (expunged by someone else), or could not be expunged.
	CleanupVMPending   = "pending"
	CleanupVMExpunging = "expunging"
	CleanupVMExpunged  = "expunged"
	CleanupVMGone      = "gone"
	CleanupVMFailed    = "failed"
)

// CleanupVM is one VM of a plan's cleanup.
type CleanupVM struct {
	VMUUID string            `json:"vmUuid"`
	Name   string            `json:"name"`
	Item   int               `json:"item"`
	Tier   int               `json:"tier"`
	State  string            `json:"state"`
	Error  *zstack.ErrorCode `json:"error,omitempty"`
	Freed  CleanupFreed      `json:"freed"`
}

// CleanupFreed is what a cleanup gave back: VMs, their CPUs and memory, primary-storage
// bytes, addresses, MACs and volume files.
type CleanupFreed struct {
	VMs          int   `json:"vms"`
	CPUNum       int64 `json:"cpuNum"`
	MemoryBytes  int64 `json:"memoryBytes"`
	StorageBytes int64 `json:"storageBytes"`
	IPs          int   `json:"ips"`
	MACs         int   `json:"macs"`
	Files        int   `json:"files"`
}

// Add adds what another VM freed.
func (f *CleanupFreed) Add(o CleanupFreed) {
	f.VMs += o.VMs
	f.CPUNum += o.CPUNum
	f.MemoryBytes += o.MemoryBytes
	f.StorageBytes += o.StorageBytes
	f.IPs += o.IPs
	f.MACs += o.MACs
	f.Files += o.Files
}
