package apiv1

// DryRunReport answers "would this plan fit right now?" (POST /api/v1/plans?dryRun=true):
// where each VM would land, or exactly why it would not, and the totals needed against what
// is free. Nothing is reserved. Warnings counts the items with warnings (a name that another
// VM already has); Note says what a dry run cannot promise.
type DryRunReport struct {
	// Mode is the plan's: recovery, or drill (every NIC on a test network, TestNetworks).
	Mode         string         `json:"mode"`
	TestNetworks []TestNetwork  `json:"testNetworks,omitempty"`
	ItemCount    int            `json:"itemCount"`
	Fits         int            `json:"fits"`
	Refused      int            `json:"refused"`
	Warnings     int            `json:"warnings"`
	Needed       Resources      `json:"needed"`
	Free         Resources      `json:"free"`
	Refusals     map[string]int `json:"refusals"`
	Items        []DryRunItem   `json:"items"`
	Note         string         `json:"note"`
}

// TestNetwork is where a drill puts the NICs of a source network: an isolated test network
// instead of the production one. SourceL3NetworkUUID is empty for the plan's default test
// network (every source network that no mapping names).
type TestNetwork struct {
	SourceL3NetworkUUID     string `json:"sourceL3NetworkUuid,omitempty"`
	ProductionL3NetworkUUID string `json:"productionL3NetworkUuid,omitempty"`
	L3NetworkUUID           string `json:"l3NetworkUuid"`
	Name                    string `json:"name,omitempty"`
}

// DryRunNote is every dry run's note.
const DryRunNote = "hosts and primary storages are chosen against the capacity free now; a restore chooses again when it starts, " +
	"so the real host or storage may differ (as may an address on an L3 network that allocates at random)"

// Resources is an amount of CPU, memory and primary storage.
type Resources struct {
	CPU     int64 `json:"cpu"`
	Memory  int64 `json:"memoryBytes"`
	Storage int64 `json:"storageBytes"`
}

// DryRunItem is where one VM would land.
type DryRunItem struct {
	Index       int            `json:"index"`
	Tier        int            `json:"tier"`
	GroupUUID   string         `json:"groupUuid"`
	Name        string         `json:"name"`
	Fits        bool           `json:"fits"`
	CPUNum      int64          `json:"cpuNum"`
	MemorySize  int64          `json:"memorySize"`
	HostUUID    string         `json:"hostUuid,omitempty"`
	HostName    string         `json:"hostName,omitempty"`
	ClusterUUID string         `json:"clusterUuid,omitempty"`
	ClusterName string         `json:"clusterName,omitempty"`
	Volumes     []DryRunVolume `json:"volumes,omitempty"`
	NICs        []DryRunNIC    `json:"nics,omitempty"`
	ErrorCode   string         `json:"errorCode,omitempty"`
	Error       string         `json:"error,omitempty"`
	// Warnings are what will not stop the restore but may not be meant: the VM's name is
	// already a VM's of the recovery site, or another item's of the plan.
	Warnings []string `json:"warnings,omitempty"`
}

// DryRunVolume is where a volume would be written.
type DryRunVolume struct {
	VolumeBackupUUID   string `json:"volumeBackupUuid"`
	Type               string `json:"type"`
	Size               int64  `json:"size"`
	PrimaryStorageUUID string `json:"primaryStorageUuid"`
	PrimaryStorageName string `json:"primaryStorageName,omitempty"`
}

// DryRunNIC is the address a NIC would get. For L3 networks with the random strategy the
// actual address is chosen at restore time; the one shown is free now.
type DryRunNIC struct {
	L3NetworkUUID string `json:"l3NetworkUuid"`
	IP            string `json:"ip"`
	Static        bool   `json:"static"`
	Random        bool   `json:"random,omitempty"`
}
