package apiv1

import "github.com/vmrestore/vmrestore/internal/job"

// PlanSpec is a restore plan as the operator writes it (JSON, or YAML through restorectl):
// the body of POST /api/v1/plans.
type PlanSpec struct {
	Name string `json:"name" yaml:"name"`
	// Mode is recovery (the default: restore onto the mapped networks) or drill (a
	// rehearsal: every NIC goes onto an isolated test network, never a production address).
	Mode           string        `json:"mode,omitempty" yaml:"mode,omitempty"`
	ClientToken    string        `json:"clientToken,omitempty" yaml:"clientToken,omitempty"`
	Groups         []string      `json:"groups,omitempty" yaml:"groups,omitempty"`
	Selector       *PlanSelector `json:"selector,omitempty" yaml:"selector,omitempty"`
	Defaults       PlanDefaults  `json:"defaults" yaml:"defaults"`
	NetworkMapping []NetworkMap  `json:"networkMapping,omitempty" yaml:"networkMapping,omitempty"`
	// TestL3NetworkUUID is a drill's default test network: where the NICs go whose mapping
	// names no testL3NetworkUuid, or whose source network no mapping names.
	TestL3NetworkUUID string                  `json:"testL3NetworkUuid,omitempty" yaml:"testL3NetworkUuid,omitempty"`
	Tiers             []TierRule              `json:"tiers,omitempty" yaml:"tiers,omitempty"`
	Overrides         map[string]PlanOverride `json:"overrides,omitempty" yaml:"overrides,omitempty"`
	Concurrency       int                     `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
	HaltOnFailure     bool                    `json:"haltOnFailure,omitempty" yaml:"haltOnFailure,omitempty"`
	// NextTierAfter says when an instant item lets the next tier start: "running" (the
	// default: as soon as its VM runs from its backup) or "hydrated" (once its data is in).
	NextTierAfter string `json:"nextTierAfter,omitempty" yaml:"nextTierAfter,omitempty"`
	WebHook       string `json:"webHook,omitempty" yaml:"webHook,omitempty"`
}

// PlanSelector picks groups from the backup index instead of listing them.
type PlanSelector struct {
	BackupStorageUUID string `json:"backupStorageUuid,omitempty" yaml:"backupStorageUuid,omitempty"`
	// SourceVMName is a glob (*, ?, [..]) on the source VM's name.
	SourceVMName string `json:"sourceVmName,omitempty" yaml:"sourceVmName,omitempty"`
	// NewestPerSourceVM keeps only the newest group of each source VM.
	NewestPerSourceVM bool `json:"newestPerSourceVm,omitempty" yaml:"newestPerSourceVm,omitempty"`
}

// PlanDefaults apply to every item unless an override says otherwise.
type PlanDefaults struct {
	ZoneUUID             string `json:"zoneUuid,omitempty" yaml:"zoneUuid,omitempty"`
	ClusterUUID          string `json:"clusterUuid,omitempty" yaml:"clusterUuid,omitempty"`
	InstanceOfferingUUID string `json:"instanceOfferingUuid,omitempty" yaml:"instanceOfferingUuid,omitempty"`
	// KeepSourceSize gives each VM the CPU and memory of its source VM.
	KeepSourceSize bool   `json:"keepSourceSize,omitempty" yaml:"keepSourceSize,omitempty"`
	Strategy       string `json:"strategy,omitempty" yaml:"strategy,omitempty"`
	// NameTemplate is a Go template over .SourceName, .SourceUUID, .GroupName, .GroupUUID,
	// .Tier and .Index; the default is "{{.SourceName}}".
	NameTemplate                    string `json:"nameTemplate,omitempty" yaml:"nameTemplate,omitempty"`
	PrimaryStorageUUIDForRootVolume string `json:"primaryStorageUuidForRootVolume,omitempty" yaml:"primaryStorageUuidForRootVolume,omitempty"`
	PrimaryStorageUUIDForDataVolume string `json:"primaryStorageUuidForDataVolume,omitempty" yaml:"primaryStorageUuidForDataVolume,omitempty"`
	// BootCheck makes every VM prove it booted ({"mode": "console:<regex>", "timeout": 600});
	// a tier's failure then holds the later tiers.
	BootCheck *job.BootCheck `json:"bootCheck,omitempty" yaml:"bootCheck,omitempty"`
	// Instant restores every VM instantly: it runs from its backup at once and its data is
	// pulled in while it runs (docs/instant-restore.md).
	Instant bool `json:"instant,omitempty" yaml:"instant,omitempty"`
}

// NextTierAfter values.
const (
	NextTierAfterRunning  = "running"
	NextTierAfterHydrated = "hydrated"
)

// NetworkMap maps a source L3 network to a recovery-site one.
type NetworkMap struct {
	SourceL3NetworkUUID string `json:"sourceL3NetworkUuid" yaml:"sourceL3NetworkUuid"`
	TargetL3NetworkUUID string `json:"targetL3NetworkUuid" yaml:"targetL3NetworkUuid"`
	// TestL3NetworkUUID is where a drill puts this network's NICs instead: an isolated test
	// network of the recovery site (isolated: true in the site file).
	TestL3NetworkUUID string `json:"testL3NetworkUuid,omitempty" yaml:"testL3NetworkUuid,omitempty"`
	// IP is "keep" (the source address, which must be in the target's ranges) or
	// "allocate" (the default).
	IP string `json:"ip,omitempty" yaml:"ip,omitempty"`
	// Mac is "keep" (the source MAC) or "regenerate" (the default).
	Mac string `json:"mac,omitempty" yaml:"mac,omitempty"`
}

// TierRule puts the groups whose source VM name matches into a tier.
type TierRule struct {
	Tier         int    `json:"tier" yaml:"tier"`
	SourceVMName string `json:"sourceVmName" yaml:"sourceVmName"`
}

// PlanOverride changes one group's item.
type PlanOverride struct {
	Name                 string `json:"name,omitempty" yaml:"name,omitempty"`
	Tier                 int    `json:"tier,omitempty" yaml:"tier,omitempty"`
	InstanceOfferingUUID string `json:"instanceOfferingUuid,omitempty" yaml:"instanceOfferingUuid,omitempty"`
	CPUNum               int64  `json:"cpuNum,omitempty" yaml:"cpuNum,omitempty"`
	MemorySize           int64  `json:"memorySize,omitempty" yaml:"memorySize,omitempty"`
	ZoneUUID             string `json:"zoneUuid,omitempty" yaml:"zoneUuid,omitempty"`
	ClusterUUID          string `json:"clusterUuid,omitempty" yaml:"clusterUuid,omitempty"`
	HostUUID             string `json:"hostUuid,omitempty" yaml:"hostUuid,omitempty"`
	Strategy             string `json:"strategy,omitempty" yaml:"strategy,omitempty"`
	// BootCheck replaces the default boot check for this group.
	BootCheck *job.BootCheck `json:"bootCheck,omitempty" yaml:"bootCheck,omitempty"`
	// Instant, when given, replaces the default for this group.
	Instant *bool `json:"instant,omitempty" yaml:"instant,omitempty"`
}

// Plan modes.
const (
	ModeRecovery = "recovery"
	ModeDrill    = "drill"
)

// IsDrill reports whether the plan is a rehearsal onto the test networks.
func (s *PlanSpec) IsDrill() bool { return s.Mode == ModeDrill }

// HasBootCheck reports whether a plan's VMs prove they booted (by default or for a group).
func (s *PlanSpec) HasBootCheck() bool {
	if s.Defaults.BootCheck != nil {
		return true
	}
	for _, ov := range s.Overrides {
		if ov.BootCheck != nil {
			return true
		}
	}
	return false
}
