// Package catalog describes the recovery site vmrestore restores onto: zones, clusters,
// hosts, primary and backup storages, L2/L3 networks, instance offerings and accounts.
//
// A Site is written by an operator in YAML (see deploy/site.example.yaml), validated by
// Parse, and turned into an immutable Index that placement and the API read without locks.
// Capacity in use is not part of the catalog: it is derived from reservations kept in Redis,
// so reloading the catalog never loses a reservation.
package catalog

// Entity states and statuses, with ZStack's spelling.
const (
	StateEnabled  = "Enabled"
	StateDisabled = "Disabled"

	StatusConnected    = "Connected"
	StatusDisconnected = "Disconnected"
	StatusConnecting   = "Connecting"

	HostStatePreMaintenance = "PreMaintenance"
	HostStateMaintenance    = "Maintenance"
)

// Primary storage types. LocalStorage capacity belongs to each host; the others are shared by
// every host of the clusters they are attached to.
const (
	PSLocalStorage = "LocalStorage"
	PSNFS          = "NFS"
	PSSharedBlock  = "SharedBlock"
	PSCeph         = "Ceph"
)

// Host allocator strategies (instance offering allocatorStrategy).
const (
	HostDefault           = "DefaultHostAllocatorStrategy"
	HostLeastVmPreferred  = "LeastVmPreferredHostAllocatorStrategy"
	HostLastHostPreferred = "LastHostPreferredAllocatorStrategy"
	HostDesignated        = "DesignatedHostAllocatorStrategy"
)

// Primary storage allocator strategies (instance offering primaryStorageAllocatorStrategy).
const (
	PSDefault          = "DefaultPrimaryStorageAllocationStrategy"
	PSLeastVolume      = "LeastVolumePrimaryStorageAllocationStrategy"
	PSMaximumAvailable = "MaximumAvailableCapacityAllocationStrategy"
)

// IP allocator strategies (L3 network ipAllocatorStrategy).
const (
	IPRandom         = "RandomIpAllocatorStrategy"
	IPFirstAvailable = "FirstAvailableIpAllocatorStrategy"
)

// Account types.
const (
	AccountSystemAdmin = "SystemAdmin"
	AccountNormal      = "Normal"
)

// Defaults applied when the site file leaves a value out (ZStack's defaults).
const (
	DefaultCPUOverProvisioningRatio    = 10.0
	DefaultMemoryOverProvisioningRatio = 1.0
	DefaultReservedHostMemory          = Bytes(1 << 30)
	DefaultPSReservedCapacity          = Bytes(1 << 30)
	DefaultMaxConcurrentClones         = 4
)

// Site is the whole recovery site as the operator declares it.
type Site struct {
	Zones             []Zone             `yaml:"zones" json:"zones"`
	Clusters          []Cluster          `yaml:"clusters" json:"clusters"`
	Hosts             []Host             `yaml:"hosts" json:"hosts"`
	PrimaryStorages   []PrimaryStorage   `yaml:"primaryStorages" json:"primaryStorages"`
	BackupStorages    []BackupStorage    `yaml:"backupStorages" json:"backupStorages"`
	L2Networks        []L2Network        `yaml:"l2Networks" json:"l2Networks"`
	L3Networks        []L3Network        `yaml:"l3Networks" json:"l3Networks"`
	InstanceOfferings []InstanceOffering `yaml:"instanceOfferings" json:"instanceOfferings"`
	Accounts          []Account          `yaml:"accounts,omitempty" json:"accounts,omitempty"`
}

// Zone is a ZStack zone.
type Zone struct {
	UUID        string `yaml:"uuid" json:"uuid"`
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	State       string `yaml:"state,omitempty" json:"state"`
}

// Cluster is a group of hosts sharing L2 networks and primary storages. Attachments are
// declared here: the L2 networks and primary storages the cluster's hosts can reach.
type Cluster struct {
	UUID                        string   `yaml:"uuid" json:"uuid"`
	Name                        string   `yaml:"name" json:"name"`
	Description                 string   `yaml:"description,omitempty" json:"description,omitempty"`
	ZoneUUID                    string   `yaml:"zoneUuid" json:"zoneUuid"`
	State                       string   `yaml:"state,omitempty" json:"state"`
	HypervisorType              string   `yaml:"hypervisorType,omitempty" json:"hypervisorType"`
	Architecture                string   `yaml:"architecture,omitempty" json:"architecture"`
	L2NetworkUUIDs              []string `yaml:"l2NetworkUuids" json:"l2NetworkUuids"`
	PrimaryStorageUUIDs         []string `yaml:"primaryStorageUuids" json:"primaryStorageUuids"`
	CPUOverProvisioningRatio    float64  `yaml:"cpuOverProvisioningRatio,omitempty" json:"cpuOverProvisioningRatio"`
	MemoryOverProvisioningRatio float64  `yaml:"memoryOverProvisioningRatio,omitempty" json:"memoryOverProvisioningRatio"`
	ReservedHostMemory          Bytes    `yaml:"reservedHostMemory,omitempty" json:"reservedHostMemory"`
}

// Host is a hypervisor host. CPU and memory are physical; the allocatable totals apply the
// over-provisioning ratios and reserved memory of the host, or else of its cluster.
type Host struct {
	UUID                        string  `yaml:"uuid" json:"uuid"`
	Name                        string  `yaml:"name" json:"name"`
	Description                 string  `yaml:"description,omitempty" json:"description,omitempty"`
	ClusterUUID                 string  `yaml:"clusterUuid" json:"clusterUuid"`
	ManagementIP                string  `yaml:"managementIp,omitempty" json:"managementIp"`
	State                       string  `yaml:"state,omitempty" json:"state"`
	Status                      string  `yaml:"status,omitempty" json:"status"`
	CPUNum                      int64   `yaml:"cpuNum" json:"cpuNum"`
	CPUSockets                  int64   `yaml:"cpuSockets,omitempty" json:"cpuSockets"`
	MemorySize                  Bytes   `yaml:"memorySize" json:"memorySize"`
	CPUOverProvisioningRatio    float64 `yaml:"cpuOverProvisioningRatio,omitempty" json:"cpuOverProvisioningRatio,omitempty"`
	MemoryOverProvisioningRatio float64 `yaml:"memoryOverProvisioningRatio,omitempty" json:"memoryOverProvisioningRatio,omitempty"`
	ReservedMemory              Bytes   `yaml:"reservedMemory,omitempty" json:"reservedMemory,omitempty"`
	// LocalStorageCapacity is this host's share of every LocalStorage primary storage
	// attached to its cluster; zero means the storage's capacityPerHost.
	LocalStorageCapacity Bytes `yaml:"localStorageCapacity,omitempty" json:"localStorageCapacity,omitempty"`
}

// PrimaryStorage is where restored volumes land: a directory (url) on the recovery site.
type PrimaryStorage struct {
	UUID                  string  `yaml:"uuid" json:"uuid"`
	Name                  string  `yaml:"name" json:"name"`
	Description           string  `yaml:"description,omitempty" json:"description,omitempty"`
	ZoneUUID              string  `yaml:"zoneUuid" json:"zoneUuid"`
	Type                  string  `yaml:"type" json:"type"`
	URL                   string  `yaml:"url" json:"url"`
	State                 string  `yaml:"state,omitempty" json:"state"`
	Status                string  `yaml:"status,omitempty" json:"status"`
	TotalCapacity         Bytes   `yaml:"totalCapacity,omitempty" json:"totalCapacity"`
	CapacityPerHost       Bytes   `yaml:"capacityPerHost,omitempty" json:"capacityPerHost,omitempty"`
	ReservedCapacity      Bytes   `yaml:"reservedCapacity,omitempty" json:"reservedCapacity"`
	OverProvisioningRatio float64 `yaml:"overProvisioningRatio,omitempty" json:"overProvisioningRatio"`
}

// BackupStorage holds VM backup groups under <url>/vm-backups/<groupUuid>/.
type BackupStorage struct {
	UUID                    string   `yaml:"uuid" json:"uuid"`
	Name                    string   `yaml:"name" json:"name"`
	Description             string   `yaml:"description,omitempty" json:"description,omitempty"`
	Type                    string   `yaml:"type,omitempty" json:"type"`
	URL                     string   `yaml:"url" json:"url"`
	State                   string   `yaml:"state,omitempty" json:"state"`
	Status                  string   `yaml:"status,omitempty" json:"status"`
	ZoneUUIDs               []string `yaml:"zoneUuids,omitempty" json:"attachedZoneUuids"`
	MaxConcurrentClones     int      `yaml:"maxConcurrentClones,omitempty" json:"maxConcurrentClones"`
	BandwidthBytesPerSecond Bytes    `yaml:"bandwidthBytesPerSecond,omitempty" json:"bandwidthBytesPerSecond"`
}

// L2Network is a layer-2 network; clusters attach to it.
type L2Network struct {
	UUID              string `yaml:"uuid" json:"uuid"`
	Name              string `yaml:"name" json:"name"`
	Description       string `yaml:"description,omitempty" json:"description,omitempty"`
	ZoneUUID          string `yaml:"zoneUuid" json:"zoneUuid"`
	Type              string `yaml:"type,omitempty" json:"type"`
	PhysicalInterface string `yaml:"physicalInterface,omitempty" json:"physicalInterface"`
	Vlan              int    `yaml:"vlan,omitempty" json:"vlan,omitempty"`
}

// L3Network is an IP network on an L2, with the ranges addresses are allocated from.
type L3Network struct {
	UUID                string    `yaml:"uuid" json:"uuid"`
	Name                string    `yaml:"name" json:"name"`
	Description         string    `yaml:"description,omitempty" json:"description,omitempty"`
	L2NetworkUUID       string    `yaml:"l2NetworkUuid" json:"l2NetworkUuid"`
	ZoneUUID            string    `yaml:"-" json:"zoneUuid"`
	Type                string    `yaml:"type,omitempty" json:"type"`
	Category            string    `yaml:"category,omitempty" json:"category"`
	State               string    `yaml:"state,omitempty" json:"state"`
	IPVersion           int       `yaml:"ipVersion,omitempty" json:"ipVersion"`
	IPAllocatorStrategy string    `yaml:"ipAllocatorStrategy,omitempty" json:"ipAllocatorStrategy"`
	DNS                 []string  `yaml:"dns,omitempty" json:"dns"`
	IPRanges            []IPRange `yaml:"ipRanges" json:"ipRanges"`
	// Isolated marks an isolated test network: no route to production, where drills may
	// restore VMs (a drill plan's test networks must be isolated). vmrestore's own field;
	// ZStack's inventory does not show it.
	Isolated bool `yaml:"isolated,omitempty" json:"isolated,omitempty"`
}

// IPRange is an inclusive IPv4 range of an L3 network; netmask and gateway apply to every
// address allocated from it.
type IPRange struct {
	UUID    string `yaml:"uuid" json:"uuid"`
	Name    string `yaml:"name,omitempty" json:"name"`
	StartIP string `yaml:"startIp" json:"startIp"`
	EndIP   string `yaml:"endIp" json:"endIp"`
	Netmask string `yaml:"netmask" json:"netmask"`
	Gateway string `yaml:"gateway" json:"gateway"`
}

// InstanceOffering fixes a VM's CPU, memory and the allocator strategies used to place it.
type InstanceOffering struct {
	UUID                            string `yaml:"uuid" json:"uuid"`
	Name                            string `yaml:"name" json:"name"`
	Description                     string `yaml:"description,omitempty" json:"description,omitempty"`
	CPUNum                          int64  `yaml:"cpuNum" json:"cpuNum"`
	CPUSpeed                        int64  `yaml:"cpuSpeed,omitempty" json:"cpuSpeed"`
	MemorySize                      Bytes  `yaml:"memorySize" json:"memorySize"`
	ReservedMemorySize              Bytes  `yaml:"reservedMemorySize,omitempty" json:"reservedMemorySize"`
	AllocatorStrategy               string `yaml:"allocatorStrategy,omitempty" json:"allocatorStrategy"`
	PrimaryStorageAllocatorStrategy string `yaml:"primaryStorageAllocatorStrategy,omitempty" json:"primaryStorageAllocatorStrategy"`
	Type                            string `yaml:"type,omitempty" json:"type"`
	State                           string `yaml:"state,omitempty" json:"state"`
}

// Account is a login identity. PasswordHash is an argon2id hash of the SHA-512 hex of the
// password (what ZStack clients send); the password itself is never stored.
type Account struct {
	UUID         string `yaml:"uuid" json:"uuid"`
	Name         string `yaml:"name" json:"name"`
	Type         string `yaml:"type,omitempty" json:"type"`
	PasswordHash string `yaml:"passwordHash" json:"passwordHash"`
}
