package zstack

// Catalog inventories, in ZStack's field names. Fields vmrestore adds beyond ZStack's are
// marked; ZStack clients ignore fields they do not know.

// ZoneInventory is a zone.
type ZoneInventory struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	State       string `json:"state"`
	Type        string `json:"type"`
	CreateDate  Date   `json:"createDate,omitzero"`
	LastOpDate  Date   `json:"lastOpDate,omitzero"`
}

// ClusterInventory is a cluster.
type ClusterInventory struct {
	UUID           string `json:"uuid"`
	Name           string `json:"name"`
	Description    string `json:"description,omitempty"`
	State          string `json:"state"`
	HypervisorType string `json:"hypervisorType"`
	ZoneUUID       string `json:"zoneUuid"`
	Type           string `json:"type"`
	Architecture   string `json:"architecture"`
	CreateDate     Date   `json:"createDate,omitzero"`
	LastOpDate     Date   `json:"lastOpDate,omitzero"`
	// vmrestore: attachments.
	AttachedL2NetworkUUIDs      []string `json:"attachedL2NetworkUuids"`
	AttachedPrimaryStorageUUIDs []string `json:"attachedPrimaryStorageUuids"`
}

// HostInventory is a host with its capacity.
type HostInventory struct {
	UUID                    string `json:"uuid"`
	Name                    string `json:"name"`
	Description             string `json:"description,omitempty"`
	ZoneUUID                string `json:"zoneUuid"`
	ClusterUUID             string `json:"clusterUuid"`
	ManagementIP            string `json:"managementIp,omitempty"`
	HypervisorType          string `json:"hypervisorType"`
	State                   string `json:"state"`
	Status                  string `json:"status"`
	TotalCPUCapacity        int64  `json:"totalCpuCapacity"`
	AvailableCPUCapacity    int64  `json:"availableCpuCapacity"`
	CPUSockets              int64  `json:"cpuSockets"`
	TotalMemoryCapacity     int64  `json:"totalMemoryCapacity"`
	AvailableMemoryCapacity int64  `json:"availableMemoryCapacity"`
	CPUNum                  int64  `json:"cpuNum"`
	Architecture            string `json:"architecture"`
	CreateDate              Date   `json:"createDate,omitzero"`
	LastOpDate              Date   `json:"lastOpDate,omitzero"`
	// vmrestore: VMs restored onto the host.
	VMCount int64 `json:"vmCount"`
}

// PrimaryStorageInventory is a primary storage with its capacity. For LocalStorage the
// capacities add up every host's share.
type PrimaryStorageInventory struct {
	UUID                 string   `json:"uuid"`
	Name                 string   `json:"name"`
	Description          string   `json:"description,omitempty"`
	ZoneUUID             string   `json:"zoneUuid"`
	URL                  string   `json:"url"`
	Type                 string   `json:"type"`
	State                string   `json:"state"`
	Status               string   `json:"status"`
	TotalCapacity        int64    `json:"totalCapacity"`
	AvailableCapacity    int64    `json:"availableCapacity"`
	AttachedClusterUUIDs []string `json:"attachedClusterUuids"`
	CreateDate           Date     `json:"createDate,omitzero"`
	LastOpDate           Date     `json:"lastOpDate,omitzero"`
	// vmrestore: capacity kept free, volumes restored onto it, and why it is Disconnected
	// when the workers' probe found its directory missing or read-only.
	ReservedCapacity int64  `json:"reservedCapacity"`
	VolumeCount      int64  `json:"volumeCount"`
	StatusReason     string `json:"statusReason,omitempty"`
}

// BackupStorageInventory is a backup storage; capacities are read from its filesystem.
type BackupStorageInventory struct {
	UUID              string   `json:"uuid"`
	Name              string   `json:"name"`
	Description       string   `json:"description,omitempty"`
	URL               string   `json:"url"`
	Type              string   `json:"type"`
	State             string   `json:"state"`
	Status            string   `json:"status"`
	TotalCapacity     int64    `json:"totalCapacity"`
	AvailableCapacity int64    `json:"availableCapacity"`
	AttachedZoneUUIDs []string `json:"attachedZoneUuids"`
	CreateDate        Date     `json:"createDate,omitzero"`
	LastOpDate        Date     `json:"lastOpDate,omitzero"`
	// vmrestore: clone limits.
	MaxConcurrentClones     int   `json:"maxConcurrentClones"`
	BandwidthBytesPerSecond int64 `json:"bandwidthBytesPerSecond"`
}

// IPRangeInventory is an IP range.
type IPRangeInventory struct {
	UUID          string `json:"uuid"`
	L3NetworkUUID string `json:"l3NetworkUuid"`
	Name          string `json:"name,omitempty"`
	StartIP       string `json:"startIp"`
	EndIP         string `json:"endIp"`
	Netmask       string `json:"netmask"`
	Gateway       string `json:"gateway"`
	NetworkCIDR   string `json:"networkCidr,omitempty"`
	IPVersion     int    `json:"ipVersion"`
	CreateDate    Date   `json:"createDate,omitzero"`
	LastOpDate    Date   `json:"lastOpDate,omitzero"`
}

// L3NetworkInventory is an L3 network with its address usage.
type L3NetworkInventory struct {
	UUID          string             `json:"uuid"`
	Name          string             `json:"name"`
	Description   string             `json:"description,omitempty"`
	Type          string             `json:"type"`
	ZoneUUID      string             `json:"zoneUuid"`
	L2NetworkUUID string             `json:"l2NetworkUuid"`
	State         string             `json:"state"`
	Category      string             `json:"category"`
	IPVersion     int                `json:"ipVersion"`
	DNS           []string           `json:"dns"`
	IPRanges      []IPRangeInventory `json:"ipRanges"`
	CreateDate    Date               `json:"createDate,omitzero"`
	LastOpDate    Date               `json:"lastOpDate,omitzero"`
	// vmrestore: allocation strategy and address counts (the gateway counts as used).
	IPAllocatorStrategy string `json:"ipAllocatorStrategy"`
	TotalIPCount        int64  `json:"totalIpCount"`
	UsedIPCount         int64  `json:"usedIpCount"`
}

// InstanceOfferingInventory is an instance offering.
type InstanceOfferingInventory struct {
	UUID               string `json:"uuid"`
	Name               string `json:"name"`
	Description        string `json:"description,omitempty"`
	CPUNum             int64  `json:"cpuNum"`
	CPUSpeed           int64  `json:"cpuSpeed"`
	MemorySize         int64  `json:"memorySize"`
	ReservedMemorySize int64  `json:"reservedMemorySize"`
	AllocatorStrategy  string `json:"allocatorStrategy"`
	SortKey            int    `json:"sortKey"`
	Type               string `json:"type"`
	State              string `json:"state"`
	CreateDate         Date   `json:"createDate,omitzero"`
	LastOpDate         Date   `json:"lastOpDate,omitzero"`
	// vmrestore: primary storage strategy.
	PrimaryStorageAllocatorStrategy string `json:"primaryStorageAllocatorStrategy"`
}

// VolumeBackupInventory is one volume backup of a group. Its dates are the group's, as a
// volume backup is written once.
type VolumeBackupInventory struct {
	UUID              string                      `json:"uuid"`
	Name              string                      `json:"name"`
	Description       string                      `json:"description,omitempty"`
	VolumeUUID        string                      `json:"volumeUuid,omitempty"`
	Type              string                      `json:"type"`
	State             string                      `json:"state"`
	Status            string                      `json:"status"`
	Size              int64                       `json:"size"`
	GroupUUID         string                      `json:"groupUuid"`
	Mode              string                      `json:"mode"`
	VMInstanceUUID    string                      `json:"vmInstanceUuid,omitempty"`
	CreateDate        Date                        `json:"createDate,omitzero"`
	LastOpDate        Date                        `json:"lastOpDate,omitzero"`
	BackupStorageRefs []BackupStorageRefInventory `json:"backupStorageRefs"`
	// vmrestore: what the backup holds.
	Format      string `json:"format"`
	ActualSize  int64  `json:"actualSize"`
	DeviceID    int    `json:"deviceId"`
	VMName      string `json:"vmName,omitempty"`
	AccountUUID string `json:"accountUuid,omitempty"`
}

// BackupStorageRefInventory places a volume backup on a backup storage (ZStack's
// VolumeBackupStorageRefInventory).
type BackupStorageRefInventory struct {
	VolumeBackupUUID  string `json:"volumeBackupUuid"`
	BackupStorageUUID string `json:"backupStorageUuid"`
	InstallPath       string `json:"installPath"`
	Status            string `json:"status"`
	CreateDate        Date   `json:"createDate,omitzero"`
	LastOpDate        Date   `json:"lastOpDate,omitzero"`
}

// ImageInventory is an image vmrestore knows of: the one a backed-up VM was created from,
// known by reference from its backup groups. vmrestore holds no copy of it, so it has no
// backup storage refs.
type ImageInventory struct {
	UUID              string                           `json:"uuid"`
	Name              string                           `json:"name"`
	Description       string                           `json:"description,omitempty"`
	State             string                           `json:"state"`
	Status            string                           `json:"status"`
	Size              int64                            `json:"size"`
	URL               string                           `json:"url,omitempty"`
	MediaType         string                           `json:"mediaType"`
	GuestOsType       string                           `json:"guestOsType,omitempty"`
	Type              string                           `json:"type"`
	Platform          string                           `json:"platform,omitempty"`
	Architecture      string                           `json:"architecture,omitempty"`
	Format            string                           `json:"format"`
	System            bool                             `json:"system"`
	CreateDate        Date                             `json:"createDate,omitzero"`
	LastOpDate        Date                             `json:"lastOpDate,omitzero"`
	BackupStorageRefs []ImageBackupStorageRefInventory `json:"backupStorageRefs"`
}

// ImageBackupStorageRefInventory places an image on a backup storage.
type ImageBackupStorageRefInventory struct {
	ImageUUID         string `json:"imageUuid"`
	BackupStorageUUID string `json:"backupStorageUuid"`
	InstallPath       string `json:"installPath"`
	Status            string `json:"status"`
	CreateDate        Date   `json:"createDate,omitzero"`
	LastOpDate        Date   `json:"lastOpDate,omitzero"`
}

// FreeIPInventory is a free address of an IP range (GetFreeIp).
type FreeIPInventory struct {
	IPRangeUUID string `json:"ipRangeUuid"`
	IP          string `json:"ip"`
	Netmask     string `json:"netmask"`
	Gateway     string `json:"gateway"`
}
