// Package hypervisor hands restored VMs to a hypervisor. Two drivers implement Driver:
//
//   - Libvirt starts real guests on KVM hosts through libvirt (one pooled connection per
//     host, from a URI template over the host's managementIp), with domain XML as ZStack's
//     KVM agent builds it, and can prove that the guest booted (a boot check).
//   - Simulator, for the embedded demo only, starts nothing: it records in Redis the state
//     ZStack would report for the requested strategy and says so in its log and metrics.
//
// Both are at-least-once safe: Instantiate finds what an earlier attempt left (by the VM's
// uuid) and carries on; Destroy treats an unknown VM as destroyed.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Driver instantiates and destroys VMs.
type Driver interface {
	// Instantiate brings vm to the state its strategy asks for (JustCreate touches no host,
	// CreateStopped defines the domain, InstantStart defines and starts it), runs the boot
	// check if one is given, and returns what the hypervisor reported.
	Instantiate(ctx context.Context, vm *VM, strategy string, check *job.BootCheck) (*Outcome, error)
	// Destroy stops and removes the VM's domain from host if the job made it; an unknown
	// VM counts as done.
	Destroy(ctx context.Context, vmUUID, jobUUID string, host Host) error
	// Stop powers the VM's domain off and keeps it defined: graceful asks the guest to shut
	// down and forces it off when it has not within the driver's bound; otherwise it is
	// forced off at once. A domain that is off, or unknown, counts as stopped.
	Stop(ctx context.Context, vmUUID, jobUUID string, host Host, graceful bool) error
	// Start starts the VM's defined domain (one that runs counts as started) and returns
	// the state the host reports.
	Start(ctx context.Context, vmUUID, jobUUID string, host Host) (string, error)
	// Name is shown in logs, the banner and /healthz.
	Name() string
}

// VM is everything a driver needs to build a domain.
type VM struct {
	UUID       string
	Name       string
	InternalID int64
	CPUNum     int64
	MemorySize int64 // bytes
	Platform   string
	Host       Host
	Disks      []Disk // any order; the domain lists them by DeviceID
	NICs       []NIC
	JobUUID    string // recorded in the domain's metadata
	GroupUUID  string
	// BeforeDefine, if set, runs just before the hypervisor is asked to define the domain,
	// so the caller can record that a domain may exist from then on.
	BeforeDefine func(ctx context.Context) error
}

// Host is where the VM runs.
type Host struct {
	UUID         string
	Name         string
	ManagementIP string
}

// String names the host in errors and logs.
func (h Host) String() string {
	return fmt.Sprintf("host[uuid:%s, name:%s, managementIp:%s]", h.UUID, h.Name, h.ManagementIP)
}

// Disk is a restored volume file.
type Disk struct {
	VolumeUUID string
	DeviceID   int
	Path       string
	Format     string // qcow2 or raw, from the backup record (never probed)
	Root       bool
	// BackingPath, for an instant restore, is the volume's backup file: Path is then a qcow2
	// overlay over it (Format is the overlay's, qcow2) and BackingFormat the backup's.
	BackingPath   string
	BackingFormat string
}

// Instant reports whether the disk runs from an overlay over its backup.
func (d Disk) Instant() bool { return d.BackingPath != "" }

// NIC is a network card on a host bridge.
type NIC struct {
	DeviceID     int
	MAC          string
	Bridge       string
	Model        string // the NIC's driverType: virtio, e1000, rtl8139
	InternalName string // vnic<internalId>.<deviceId>, the tap device name
}

// Outcome is what the hypervisor reported after Instantiate.
type Outcome struct {
	// State is the VM state in ZStack's words (Running, Stopped, Created, Paused...), read
	// back from the hypervisor, not assumed.
	State string
	// BootCheck says how the boot check passed, when there was one.
	BootCheck string
}

// StateFor returns the VM state a strategy ends in.
func StateFor(strategy string) string {
	switch strategy {
	case zstack.StrategyCreateStopped:
		return zstack.VMStopped
	case zstack.StrategyJustCreate:
		return zstack.VMCreated
	}
	return zstack.VMRunning
}

// BootCheckError is a boot check that did not pass: the guest did not show what the check
// waits for within its timeout. It carries the last lines the console printed.
type BootCheckError struct {
	Check   *job.BootCheck
	Reason  string
	Console []string
}

func (e *BootCheckError) Error() string {
	msg := fmt.Sprintf("boot check %s failed: %s", e.Check, e.Reason)
	if len(e.Console) > 0 {
		msg += "; the console's last lines: " + strings.Join(e.Console, " ⏎ ")
	} else if e.Check.Mode == job.BootConsole {
		msg += "; the console printed nothing"
	}
	return msg
}

// IsBootCheckFailure reports whether err is a failed boot check (not a hypervisor outage).
func IsBootCheckFailure(err error) bool {
	var b *BootCheckError
	return errors.As(err, &b)
}

// ErrNotBootable is wrapped by errors that no retry can fix: the domain XML is refused, a
// bridge is missing, a disk path is wrong. The job fails at once instead of retrying.
var ErrNotBootable = errors.New("the hypervisor refused the VM")
