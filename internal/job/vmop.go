package job

import (
	"fmt"
	"slices"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// A VM operation is a job too: ZStack's life-cycle APIs on a restored VM, queued, polled
// and cancelled like a restore. Its record carries the operation instead of a restore
// request (Record.Op).

// VM operation names, as ZStack's API messages name them.
const (
	OpDestroy = "DestroyVmInstance"
	OpExpunge = "ExpungeVmInstance"
	OpRecover = "RecoverVmInstance"
	OpStop    = "StopVmInstance"
	OpStart   = "StartVmInstance"
	OpReboot  = "RebootVmInstance"
)

// Stop types (StopVmInstance's "type").
const (
	StopGrace = "grace"
	StopCold  = "cold"
)

// Delete modes (DestroyVmInstance's "deleteMode").
const (
	DeletePermissive = "Permissive"
	DeleteEnforcing  = "Enforcing"
)

// VMOp is one life-cycle operation on one VM.
type VMOp struct {
	Name   string `json:"name"`
	VMUUID string `json:"vmUuid"`
	// StopType is grace or cold (StopVmInstance).
	StopType string `json:"stopType,omitempty"`
	// HostUUID is where StartVmInstance should start the VM (only its own host is possible).
	HostUUID string `json:"hostUuid,omitempty"`
	// DeleteMode is Permissive or Enforcing (DestroyVmInstance).
	DeleteMode string `json:"deleteMode,omitempty"`
}

// Stage is the stage label the operation runs under in metrics and job records.
func (o *VMOp) Stage() string {
	switch o.Name {
	case OpDestroy:
		return "destroy"
	case OpExpunge:
		return "expunge"
	case OpRecover:
		return "recover"
	case OpStop:
		return "stop"
	case OpStart:
		return "start"
	}
	return "reboot"
}

// allowedStates is, per operation, the VM states it may start from: VmInstanceBase's
// allowed operations restricted to the states a restored VM can be in.
var allowedStates = map[string][]string{
	OpDestroy: {zstack.VMCreated, zstack.VMRunning, zstack.VMStopped, zstack.VMPaused, "Unknown", "Crashed", "Error"},
	OpExpunge: {zstack.VMDestroyed},
	OpRecover: {zstack.VMDestroyed},
	OpStop:    {zstack.VMRunning, zstack.VMStopped, zstack.VMPaused, "Unknown", "Crashed"},
	OpStart:   {zstack.VMStopped, zstack.VMCreated, zstack.VMRunning},
	OpReboot:  {zstack.VMRunning},
}

// outerCode is the VmErrors code ZStack wraps a refused operation in.
var outerCode = map[string]string{
	OpStart: zstack.CodeVMStart, OpStop: zstack.CodeVMStop, OpReboot: zstack.CodeVMReboot, OpDestroy: zstack.CodeVMDestroy,
}

// CheckState refuses an operation the VM's state does not allow, as VmInstanceBase does:
// VM.1010 naming the state and the allowed ones, inside the operation's own VmErrors code.
func (o *VMOp) CheckState(state string) *zstack.ErrorCode {
	allowed := allowedStates[o.Name]
	if slices.Contains(allowed, state) {
		return nil
	}
	cause := zstack.Errorf(zstack.CodeVMWrongState, "current vm instance state[%s] doesn't allow to proceed message[org.zstack.header.vm.API%sMsg], allowed states are %v",
		state, o.Name, allowed)
	if outer, ok := outerCode[o.Name]; ok {
		return zstack.Wrap(outer, cause)
	}
	return cause
}

// Validate checks the operation's parameters as ZStack's API message declares them.
func (o *VMOp) Validate() *zstack.ErrorCode {
	if !zstack.IsUUID(o.VMUUID) {
		return zstack.InvalidArgument("invalid value[%s] of field[uuid]: a VM uuid is 32 lowercase hex characters", o.VMUUID)
	}
	switch o.Name {
	case OpStop:
		if o.StopType == "" {
			o.StopType = StopGrace
		}
		if o.StopType != StopGrace && o.StopType != StopCold {
			return zstack.InvalidArgument("invalid value[%s] of field[type], valid values are [%s, %s]", o.StopType, StopGrace, StopCold)
		}
	case OpDestroy:
		if o.DeleteMode == "" {
			o.DeleteMode = DeletePermissive
		}
		if o.DeleteMode != DeletePermissive && o.DeleteMode != DeleteEnforcing {
			return zstack.InvalidArgument("invalid value[%s] of field[deleteMode], valid values are [%s, %s]", o.DeleteMode, DeletePermissive, DeleteEnforcing)
		}
	case OpStart:
		if o.HostUUID != "" && !zstack.IsUUID(o.HostUUID) {
			return zstack.InvalidArgument("invalid value[%s] of field[hostUuid]: a host uuid is 32 lowercase hex characters", o.HostUUID)
		}
	case OpExpunge, OpRecover, OpReboot:
	default:
		return zstack.InvalidArgument("unknown VM operation %q", o.Name)
	}
	return nil
}

// NotFound is the answer for a VM that does not exist or belongs to another account (the two
// are not told apart, so uuids cannot be probed).
func (o *VMOp) NotFound() *zstack.ErrorCode {
	return zstack.InvalidArgument("invalid field[uuid], resource[uuid:%s, type:VmInstanceVO] not found", o.VMUUID)
}

// String names the operation in logs.
func (o *VMOp) String() string { return fmt.Sprintf("%s[vm:%s]", o.Name, o.VMUUID) }
