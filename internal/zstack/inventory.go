package zstack

// Inventories as ZStack clients read them. Like ZStack's own serializer (gson without
// serializeNulls), a string that has no value is left out rather than written as null;
// numbers and lists are always present.

// VM states.
const (
	VMCreated   = "Created"
	VMRunning   = "Running"
	VMStopped   = "Stopped"
	VMDestroyed = "Destroyed"
	VMPaused    = "Paused"
)

// Restore strategies (the "strategy" parameter).
const (
	StrategyInstantStart  = "InstantStart"
	StrategyJustCreate    = "JustCreate"
	StrategyCreateStopped = "CreateStopped"
)

// Volume statuses and states.
const (
	VolumeReady           = "Ready"
	VolumeNotInstantiated = "NotInstantiated"
	VolumeEnabled         = "Enabled"
)

// VmInstanceInventory is a VM as ZStack returns it.
type VmInstanceInventory struct {
	UUID                 string             `json:"uuid"`
	Name                 string             `json:"name"`
	Description          string             `json:"description,omitempty"`
	ZoneUUID             string             `json:"zoneUuid,omitempty"`
	ClusterUUID          string             `json:"clusterUuid,omitempty"`
	ImageUUID            string             `json:"imageUuid,omitempty"`
	HostUUID             string             `json:"hostUuid,omitempty"`
	LastHostUUID         string             `json:"lastHostUuid,omitempty"`
	InstanceOfferingUUID string             `json:"instanceOfferingUuid,omitempty"`
	RootVolumeUUID       string             `json:"rootVolumeUuid,omitempty"`
	Platform             string             `json:"platform,omitempty"`
	Architecture         string             `json:"architecture,omitempty"`
	DefaultL3NetworkUUID string             `json:"defaultL3NetworkUuid,omitempty"`
	Type                 string             `json:"type"`
	HypervisorType       string             `json:"hypervisorType,omitempty"`
	MemorySize           int64              `json:"memorySize"`
	ReservedMemorySize   int64              `json:"reservedMemorySize"`
	CPUNum               int64              `json:"cpuNum"`
	CPUSpeed             int64              `json:"cpuSpeed"`
	AllocatorStrategy    string             `json:"allocatorStrategy,omitempty"`
	CreateDate           Date               `json:"createDate"`
	LastOpDate           Date               `json:"lastOpDate"`
	State                string             `json:"state"`
	GuestOsType          string             `json:"guestOsType,omitempty"`
	VMNics               []VmNicInventory   `json:"vmNics"`
	AllVolumes           []VolumeInventory  `json:"allVolumes"`
	VMCdRoms             []VmCdRomInventory `json:"vmCdRoms"`
}

// VmNicInventory is a VM NIC. UsedIPUUID repeats the first usedIps entry, as older ZStack
// releases (and the API reference example) carry it.
type VmNicInventory struct {
	UUID           string            `json:"uuid"`
	VMInstanceUUID string            `json:"vmInstanceUuid"`
	UsedIPUUID     string            `json:"usedIpUuid,omitempty"`
	L3NetworkUUID  string            `json:"l3NetworkUuid"`
	IP             string            `json:"ip,omitempty"`
	Mac            string            `json:"mac"`
	HypervisorType string            `json:"hypervisorType,omitempty"`
	Netmask        string            `json:"netmask,omitempty"`
	Gateway        string            `json:"gateway,omitempty"`
	MetaData       string            `json:"metaData,omitempty"`
	IPVersion      int               `json:"ipVersion"`
	DriverType     string            `json:"driverType"`
	InternalName   string            `json:"internalName"`
	DeviceID       int               `json:"deviceId"`
	Type           string            `json:"type"`
	State          string            `json:"state"`
	CreateDate     Date              `json:"createDate"`
	LastOpDate     Date              `json:"lastOpDate"`
	UsedIPs        []UsedIPInventory `json:"usedIps"`
}

// UsedIPInventory records one address taken from an IP range.
type UsedIPInventory struct {
	UUID          string `json:"uuid"`
	IPRangeUUID   string `json:"ipRangeUuid"`
	L3NetworkUUID string `json:"l3NetworkUuid"`
	IPVersion     int    `json:"ipVersion"`
	IP            string `json:"ip"`
	Netmask       string `json:"netmask"`
	Gateway       string `json:"gateway"`
	UsedFor       string `json:"usedFor,omitempty"`
	IPInLong      int64  `json:"ipInLong"`
	VMNicUUID     string `json:"vmNicUuid"`
	CreateDate    Date   `json:"createDate"`
	LastOpDate    Date   `json:"lastOpDate"`
}

// VolumeInventory is a VM volume.
type VolumeInventory struct {
	UUID               string `json:"uuid"`
	Name               string `json:"name"`
	Description        string `json:"description,omitempty"`
	PrimaryStorageUUID string `json:"primaryStorageUuid,omitempty"`
	VMInstanceUUID     string `json:"vmInstanceUuid"`
	DiskOfferingUUID   string `json:"diskOfferingUuid,omitempty"`
	RootImageUUID      string `json:"rootImageUuid,omitempty"`
	InstallPath        string `json:"installPath,omitempty"`
	Type               string `json:"type"`
	Format             string `json:"format"`
	Size               int64  `json:"size"`
	ActualSize         int64  `json:"actualSize"`
	DeviceID           int    `json:"deviceId"`
	State              string `json:"state"`
	Status             string `json:"status"`
	CreateDate         Date   `json:"createDate"`
	LastOpDate         Date   `json:"lastOpDate"`
	IsShareable        bool   `json:"isShareable"`
	VolumeQos          string `json:"volumeQos,omitempty"`
	LastDetachDate     Date   `json:"lastDetachDate,omitzero"`
	LastVMInstanceUUID string `json:"lastVmInstanceUuid,omitempty"`
	LastAttachDate     Date   `json:"lastAttachDate,omitzero"`
	Protocol           string `json:"protocol,omitempty"`
}

// VmCdRomInventory is a VM CD-ROM drive.
type VmCdRomInventory struct {
	UUID           string `json:"uuid"`
	VMInstanceUUID string `json:"vmInstanceUuid"`
	DeviceID       int    `json:"deviceId"`
	IsoUUID        string `json:"isoUuid,omitempty"`
	IsoInstallPath string `json:"isoInstallPath,omitempty"`
	Name           string `json:"name"`
	Description    string `json:"description,omitempty"`
	Protocol       string `json:"protocol,omitempty"`
	CreateDate     Date   `json:"createDate"`
	LastOpDate     Date   `json:"lastOpDate"`
}

// SessionInventory is a login session.
type SessionInventory struct {
	UUID        string `json:"uuid"`
	AccountUUID string `json:"accountUuid"`
	UserUUID    string `json:"userUuid"`
	UserType    string `json:"userType,omitempty"`
	ExpiredDate Date   `json:"expiredDate"`
	CreateDate  Date   `json:"createDate"`
}
