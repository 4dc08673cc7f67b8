package catalog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// Fixed uuids of the base site.
var (
	zoneA   = u(1)
	zoneB   = u(2)
	l2A     = u(3)
	l2B     = u(4)
	psNFS   = u(5)
	psLocal = u(6)
	psB     = u(7)
	clA     = u(8)
	hostA   = u(9)
	bsA     = u(10)
	l3A     = u(11)
	rangeA  = u(12)
	offerA  = u(13)
	acctA   = u(14)
	clB     = u(15)
)

func u(n int) string { return fmt.Sprintf("%032x", n) }

const argonHash = "$argon2id$v=19$m=65536,t=1,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

// baseSite is a small valid site with two zones; everything optional is left out so that
// Parse fills in the defaults.
func baseSite() *catalog.Site {
	return &catalog.Site{
		Zones: []catalog.Zone{{UUID: zoneA, Name: "zone-a"}, {UUID: zoneB, Name: "zone-b"}},
		L2Networks: []catalog.L2Network{
			{UUID: l2A, Name: "l2-a", ZoneUUID: zoneA},
			{UUID: l2B, Name: "l2-b", ZoneUUID: zoneB, Type: "L2VlanNetwork", Vlan: 10},
		},
		PrimaryStorages: []catalog.PrimaryStorage{
			{UUID: psNFS, Name: "nfs", ZoneUUID: zoneA, Type: catalog.PSNFS, URL: "/data/nfs", TotalCapacity: 2 << 40},
			{UUID: psLocal, Name: "local", ZoneUUID: zoneA, Type: catalog.PSLocalStorage, URL: "/data/local/", CapacityPerHost: 1 << 40},
			{UUID: psB, Name: "ceph", ZoneUUID: zoneB, Type: catalog.PSCeph, URL: "/", TotalCapacity: 1 << 40},
		},
		Clusters: []catalog.Cluster{
			{UUID: clA, Name: "cluster-a", ZoneUUID: zoneA, L2NetworkUUIDs: []string{l2A}, PrimaryStorageUUIDs: []string{psNFS, psLocal}},
			{UUID: clB, Name: "cluster-b", ZoneUUID: zoneB, L2NetworkUUIDs: []string{l2B}, PrimaryStorageUUIDs: []string{psB}},
		},
		Hosts:          []catalog.Host{{UUID: hostA, Name: "host-a", ClusterUUID: clA, ManagementIP: "172.20.0.11", CPUNum: 32, MemorySize: 128 << 30}},
		BackupStorages: []catalog.BackupStorage{{UUID: bsA, Name: "bs", URL: "/data/backup"}},
		L3Networks: []catalog.L3Network{{UUID: l3A, Name: "l3-a", L2NetworkUUID: l2A, DNS: []string{"8.8.8.8", "2001:4860:4860::8888"},
			IPRanges: []catalog.IPRange{{UUID: rangeA, StartIP: "10.0.0.10", EndIP: "10.0.0.200", Netmask: "255.255.255.0", Gateway: "10.0.0.1"}}}},
		InstanceOfferings: []catalog.InstanceOffering{{UUID: offerA, Name: "small", CPUNum: 2, MemorySize: 4 << 30}},
		Accounts:          []catalog.Account{{UUID: acctA, Name: "ops", PasswordHash: argonHash}},
	}
}

// parseSite writes s as YAML, the way an operator would, and parses it.
func parseSite(tb testing.TB, s *catalog.Site) (*catalog.Site, error) {
	tb.Helper()
	b, err := yaml.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	return catalog.Parse(b)
}

func TestParseAppliesDefaults(t *testing.T) {
	s, err := parseSite(t, baseSite())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"zone state", s.Zones[0].State, "Enabled"},
		{"cluster state", s.Clusters[0].State, "Enabled"},
		{"cluster hypervisor", s.Clusters[0].HypervisorType, "KVM"},
		{"cluster architecture", s.Clusters[0].Architecture, "x86_64"},
		{"cluster cpu ratio", s.Clusters[0].CPUOverProvisioningRatio, 10.0},
		{"cluster memory ratio", s.Clusters[0].MemoryOverProvisioningRatio, 1.0},
		{"cluster reserved memory", s.Clusters[0].ReservedHostMemory, catalog.Bytes(1 << 30)},
		{"host state", s.Hosts[0].State, "Enabled"},
		{"host status", s.Hosts[0].Status, "Connected"},
		{"host sockets", s.Hosts[0].CPUSockets, int64(1)},
		{"ps state", s.PrimaryStorages[0].State, "Enabled"},
		{"ps status", s.PrimaryStorages[0].Status, "Connected"},
		{"ps reserved", s.PrimaryStorages[0].ReservedCapacity, catalog.Bytes(1 << 30)},
		{"ps ratio", s.PrimaryStorages[0].OverProvisioningRatio, 1.0},
		{"bs state", s.BackupStorages[0].State, "Enabled"},
		{"bs status", s.BackupStorages[0].Status, "Connected"},
		{"bs type", s.BackupStorages[0].Type, "ImageStoreBackupStorage"},
		{"bs clones", s.BackupStorages[0].MaxConcurrentClones, 4},
		{"bs zones", s.BackupStorages[0].ZoneUUIDs, []string{zoneA, zoneB}},
		{"l2 type", s.L2Networks[0].Type, "L2NoVlanNetwork"},
		{"l2 type kept", s.L2Networks[1].Type, "L2VlanNetwork"},
		{"l3 state", s.L3Networks[0].State, "Enabled"},
		{"l3 type", s.L3Networks[0].Type, "L3BasicNetwork"},
		{"l3 category", s.L3Networks[0].Category, "Private"},
		{"l3 strategy", s.L3Networks[0].IPAllocatorStrategy, "RandomIpAllocatorStrategy"},
		{"l3 ip version", s.L3Networks[0].IPVersion, 4},
		{"l3 zone from its l2", s.L3Networks[0].ZoneUUID, zoneA},
		{"offering state", s.InstanceOfferings[0].State, "Enabled"},
		{"offering type", s.InstanceOfferings[0].Type, "UserVm"},
		{"offering host strategy", s.InstanceOfferings[0].AllocatorStrategy, "DefaultHostAllocatorStrategy"},
		{"offering ps strategy", s.InstanceOfferings[0].PrimaryStorageAllocatorStrategy, "DefaultPrimaryStorageAllocationStrategy"},
		{"account type", s.Accounts[0].Type, "Normal"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}
}

func TestParseKeepsExplicitValues(t *testing.T) {
	b := baseSite()
	b.Zones[1].State = "Disabled"
	c := &b.Clusters[0]
	c.State, c.HypervisorType, c.Architecture = "Disabled", "ESX", "aarch64"
	c.CPUOverProvisioningRatio, c.MemoryOverProvisioningRatio, c.ReservedHostMemory = 4, 1.5, 2<<30
	h := &b.Hosts[0]
	h.State, h.Status, h.CPUSockets = "Maintenance", "Disconnected", 2
	p := &b.PrimaryStorages[0]
	p.State, p.Status, p.ReservedCapacity, p.OverProvisioningRatio = "Disabled", "Connecting", 5<<30, 2.5
	bs := &b.BackupStorages[0]
	bs.Type, bs.MaxConcurrentClones, bs.ZoneUUIDs, bs.BandwidthBytesPerSecond = "SftpBackupStorage", 16, []string{zoneB}, 100<<20
	bs.State, bs.Status = "Disabled", "Disconnected"
	l3 := &b.L3Networks[0]
	l3.Type, l3.Category, l3.IPAllocatorStrategy = "L3VpcNetwork", "Public", "FirstAvailableIpAllocatorStrategy"
	o := &b.InstanceOfferings[0]
	o.State = "Disabled"
	o.Type, o.AllocatorStrategy, o.PrimaryStorageAllocatorStrategy = "ApplianceVm", "LeastVmPreferredHostAllocatorStrategy", "MaximumAvailableCapacityAllocationStrategy"
	b.Accounts[0].Type = "SystemAdmin"
	s, err := parseSite(t, b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if s.Zones[1].State != "Disabled" || !reflect.DeepEqual(s.Clusters[0], *c) || !reflect.DeepEqual(s.Hosts[0], *h) ||
		!reflect.DeepEqual(s.PrimaryStorages[0], *p) || !reflect.DeepEqual(s.BackupStorages[0], *bs) || !reflect.DeepEqual(s.InstanceOfferings[0], *o) {
		t.Fatalf("explicit values changed:\n%+v\n%+v\n%+v\n%+v\n%+v", s.Clusters[0], s.Hosts[0], s.PrimaryStorages[0], s.BackupStorages[0], s.InstanceOfferings[0])
	}
	if s.L3Networks[0].Type != "L3VpcNetwork" || s.L3Networks[0].Category != "Public" || s.L3Networks[0].IPAllocatorStrategy != catalog.IPFirstAvailable {
		t.Fatalf("l3 = %+v", s.L3Networks[0])
	}
	if s.Accounts[0].Type != "SystemAdmin" {
		t.Fatalf("account type %q", s.Accounts[0].Type)
	}
}

func TestParseYAMLTextAndJSON(t *testing.T) {
	yamlText := `
zones:
  - uuid: ` + zoneA + `
    name: zone-a
clusters:
  - uuid: ` + clA + `
    name: c
    zoneUuid: ` + zoneA + `
    l2NetworkUuids: []
    primaryStorageUuids: [` + psNFS + `]
    reservedHostMemory: 2GiB
hosts:
  - {uuid: ` + hostA + `, name: h, clusterUuid: ` + clA + `, cpuNum: 8, memorySize: "64 GiB"}
primaryStorages:
  - {uuid: ` + psNFS + `, name: nfs, zoneUuid: ` + zoneA + `, type: NFS, url: /srv/nfs, totalCapacity: 1.5TiB}
`
	s, err := catalog.Parse([]byte(yamlText))
	if err != nil {
		t.Fatalf("YAML: %v", err)
	}
	if s.Hosts[0].MemorySize != 64<<30 || s.PrimaryStorages[0].TotalCapacity != 3<<39 || s.Clusters[0].ReservedHostMemory != 2<<30 {
		t.Fatalf("sizes: %d %d %d", s.Hosts[0].MemorySize, s.PrimaryStorages[0].TotalCapacity, s.Clusters[0].ReservedHostMemory)
	}
	jsonText := `{"zones":[{"uuid":"` + zoneA + `","name":"z"}],
	  "hosts":[], "primaryStorages":[{"uuid":"` + psNFS + `","name":"n","zoneUuid":"` + zoneA + `","type":"NFS","url":"/n","totalCapacity":"10GB"}]}`
	s, err = catalog.Parse([]byte(jsonText))
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if s.PrimaryStorages[0].TotalCapacity != 10e9 || s.Zones[0].State != "Enabled" {
		t.Fatalf("JSON site = %+v", s)
	}
}

func TestParseRejectsMalformedDocuments(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "the site is empty"},
		{"only a comment", "# nothing\n", "the site is empty"},
		{"unknown top-level field", "zones: []\nregions: []\n", "cannot parse"},
		{"unknown nested field", "zones:\n  - uuid: " + zoneA + "\n    name: z\n    color: blue\n", "field color not found"},
		{"misspelled field", "zones:\n  - uuid: " + zoneA + "\n    Name: z\n", "field Name not found"},
		{"zoneUuid is a yaml-only derived field", "l3Networks:\n  - zoneUuid: " + zoneA + "\n", "field zoneUuid not found"},
		{"not a mapping", "- a\n- b\n", "cannot parse"},
		{"bad size", "hosts:\n  - memorySize: lots\n", `size "lots"`},
		{"wrong type", "hosts:\n  - cpuNum: many\n", "cannot parse"},
		{"broken yaml", "zones: [\n", "cannot parse"},
		{"tab indentation", "zones:\n\t- uuid: x\n", "cannot parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := catalog.Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %+v, %v; want error containing %q", s, err, tc.want)
			}
			if s != nil {
				t.Fatal("a site returned with an error")
			}
		})
	}
}

func TestParseValidationProblems(t *testing.T) {
	tests := []struct {
		name string
		mod  func(s *catalog.Site)
		want string
	}{
		{"no zones", func(s *catalog.Site) { *s = catalog.Site{} }, "zones: the site needs at least one zone"},
		{"zone uuid", func(s *catalog.Site) { s.Zones[0].UUID = "Z" }, `zones[0]: uuid "Z" is not 32 lowercase hex characters`},
		{"zone uuid upper case", func(s *catalog.Site) { s.Zones[1].UUID = strings.ToUpper(u(0xabc)) }, `zones[1]: uuid "` + strings.ToUpper(u(0xabc)) + `" is not 32 lowercase hex`},
		{"duplicate uuid across kinds", func(s *catalog.Site) { s.InstanceOfferings[0].UUID = zoneA },
			"instanceOfferings[0]: uuid " + zoneA + " is already used by zones[0]"},
		{"duplicate range uuid", func(s *catalog.Site) { s.L3Networks[0].IPRanges[0].UUID = hostA },
			"l3Networks[0].ipRanges[0]: uuid " + hostA + " is already used by hosts[0]"},
		{"zone name missing", func(s *catalog.Site) { s.Zones[0].Name = " " }, "zones[0]: name is required"},
		{"zone name too long", func(s *catalog.Site) { s.Zones[0].Name = strings.Repeat("z", 256) }, "zones[0]: name is longer than 255 characters"},
		{"zone state", func(s *catalog.Site) { s.Zones[0].State = "enabled" }, `zones[0]: state "enabled" must be Enabled or Disabled`},

		{"l2 zone", func(s *catalog.Site) { s.L2Networks[0].ZoneUUID = u(99) }, `l2Networks[0]: zoneUuid "` + u(99) + `" is not a zone of this site`},
		{"l2 type", func(s *catalog.Site) { s.L2Networks[0].Type = "Bridge" }, `l2Networks[0]: type "Bridge" must be L2NoVlanNetwork, L2VlanNetwork or VxlanNetwork`},
		{"l2 name", func(s *catalog.Site) { s.L2Networks[1].Name = "" }, "l2Networks[1]: name is required"},
		{"l2 interface too long", func(s *catalog.Site) { s.L2Networks[0].PhysicalInterface = "eth0123456789abc" }, `l2Networks[0]: physicalInterface "eth0123456789abc" is not a network interface name`},
		{"l2 interface with slash", func(s *catalog.Site) { s.L2Networks[0].PhysicalInterface = "eth/0" }, `physicalInterface "eth/0" is not a network interface name`},
		{"l2 vlan without vlan id", func(s *catalog.Site) { s.L2Networks[0].Type = "L2VlanNetwork" }, "l2Networks[0]: an L2VlanNetwork needs a vlan between 1 and 4094, got 0"},
		{"l2 vlan out of range", func(s *catalog.Site) { s.L2Networks[0].Type, s.L2Networks[0].Vlan = "L2VlanNetwork", 4095 }, "needs a vlan between 1 and 4094, got 4095"},
		{"l2 vlan on a no-vlan network", func(s *catalog.Site) { s.L2Networks[0].Vlan = 10 }, "l2Networks[0]: vlan 10 is only for type L2VlanNetwork"},

		{"ps url missing", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "" }, "primaryStorages[0]: url (a directory) is required"},
		{"ps url relative", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "data/nfs" }, `primaryStorages[0]: url "data/nfs" must be an absolute directory path`},
		{"ps url with ..", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "/data/../etc" }, `primaryStorages[0]: url "/data/../etc" must be a clean path`},
		{"ps url with .", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "/data/./nfs" }, "must be a clean path"},
		{"ps url with //", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "/data//nfs" }, "must be a clean path"},
		{"ps url with two trailing slashes", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "/data/nfs//" }, "must be a clean path"},
		{"ps url with NUL", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "/data/\x00" }, "primaryStorages[0]: url contains a NUL byte"},
		{"ps zone", func(s *catalog.Site) { s.PrimaryStorages[0].ZoneUUID = "" }, `primaryStorages[0]: zoneUuid "" is not a zone of this site`},
		{"ps type", func(s *catalog.Site) { s.PrimaryStorages[0].Type = "nfs" }, `primaryStorages[0]: type "nfs" must be LocalStorage, NFS, SharedBlock or Ceph`},
		{"ps type missing", func(s *catalog.Site) { s.PrimaryStorages[0].Type = "" }, `primaryStorages[0]: type "" must be`},
		{"ps state", func(s *catalog.Site) { s.PrimaryStorages[0].State = "Maintenance" }, `primaryStorages[0]: state "Maintenance" must be Enabled or Disabled`},
		{"ps status", func(s *catalog.Site) { s.PrimaryStorages[0].Status = "Up" }, `primaryStorages[0]: status "Up" must be Connected, Disconnected or Connecting`},
		{"shared ps without capacity", func(s *catalog.Site) { s.PrimaryStorages[0].TotalCapacity = 0 }, "primaryStorages[0]: totalCapacity must be positive for a NFS storage"},
		{"ceph ps without capacity", func(s *catalog.Site) { s.PrimaryStorages[2].TotalCapacity = 0 }, "primaryStorages[2]: totalCapacity must be positive for a Ceph storage"},
		{"ps ratio negative", func(s *catalog.Site) { s.PrimaryStorages[0].OverProvisioningRatio = -1 }, "primaryStorages[0]: overProvisioningRatio cannot be negative"},

		{"cluster zone", func(s *catalog.Site) { s.Clusters[0].ZoneUUID = u(99) }, `clusters[0]: zoneUuid "` + u(99) + `" is not a zone of this site`},
		{"cluster state", func(s *catalog.Site) { s.Clusters[0].State = "Off" }, `clusters[0]: state "Off" must be Enabled or Disabled`},
		{"cluster ratio negative", func(s *catalog.Site) { s.Clusters[0].CPUOverProvisioningRatio = -2 },
			"clusters[0]: over-provisioning ratios and reserved memory cannot be negative"},
		{"cluster memory ratio negative", func(s *catalog.Site) { s.Clusters[0].MemoryOverProvisioningRatio = -0.5 },
			"clusters[0]: over-provisioning ratios and reserved memory cannot be negative"},
		{"cluster unknown l2", func(s *catalog.Site) { s.Clusters[0].L2NetworkUUIDs = []string{l2A, u(99)} },
			`clusters[0]: l2NetworkUuids: "` + u(99) + `" is not an L2 network of this site`},
		{"cluster l2 of another zone", func(s *catalog.Site) { s.Clusters[0].L2NetworkUUIDs = []string{l2B} },
			"clusters[0]: l2 network " + l2B + " is in another zone"},
		{"cluster unknown ps", func(s *catalog.Site) { s.Clusters[0].PrimaryStorageUUIDs = []string{"nfs"} },
			`clusters[0]: primaryStorageUuids: "nfs" is not a primary storage of this site`},
		{"cluster ps of another zone", func(s *catalog.Site) { s.Clusters[0].PrimaryStorageUUIDs = []string{psB} },
			"clusters[0]: primary storage " + psB + " is in another zone"},

		{"host cluster", func(s *catalog.Site) { s.Hosts[0].ClusterUUID = u(99) }, `hosts[0]: clusterUuid "` + u(99) + `" is not a cluster of this site`},
		{"host state", func(s *catalog.Site) { s.Hosts[0].State = "Up" }, `hosts[0]: state "Up" must be Enabled, Disabled, PreMaintenance or Maintenance`},
		{"host status", func(s *catalog.Site) { s.Hosts[0].Status = "Up" }, `hosts[0]: status "Up" must be Connected, Disconnected or Connecting`},
		{"host cpu 0", func(s *catalog.Site) { s.Hosts[0].CPUNum = 0 }, "hosts[0]: cpuNum must be between 1 and 65536"},
		{"host cpu negative", func(s *catalog.Site) { s.Hosts[0].CPUNum = -1 }, "hosts[0]: cpuNum must be between 1 and 65536"},
		{"host cpu 65537", func(s *catalog.Site) { s.Hosts[0].CPUNum = 65537 }, "hosts[0]: cpuNum must be between 1 and 65536"},
		{"host memory 0", func(s *catalog.Site) { s.Hosts[0].MemorySize = 0 }, "hosts[0]: memorySize must be positive"},
		{"host ip", func(s *catalog.Site) { s.Hosts[0].ManagementIP = "host-a.local" }, `hosts[0]: managementIp "host-a.local" is not an IPv4 address`},
		{"host ip v6", func(s *catalog.Site) { s.Hosts[0].ManagementIP = "fd00::1" }, `hosts[0]: managementIp "fd00::1" is not an IPv4 address`},
		{"host ip twice", func(s *catalog.Site) {
			h := s.Hosts[0]
			h.UUID, h.Name, h.ManagementIP = u(98), "twin", "10.0.0.9"
			s.Hosts[0].ManagementIP = "10.0.0.9"
			s.Hosts = append(s.Hosts, h)
		}, "managementIp 10.0.0.9 is already the address of hosts[0]"},
		{"host ratio negative", func(s *catalog.Site) { s.Hosts[0].CPUOverProvisioningRatio = -1 },
			"hosts[0]: ratios, reserved memory and capacities cannot be negative"},
		{"host on local storage without capacity", func(s *catalog.Site) { s.PrimaryStorages[1].CapacityPerHost = 0 },
			"hosts[0]: local storage " + psLocal + " needs capacityPerHost or the host's localStorageCapacity"},

		{"bs uuid", func(s *catalog.Site) { s.BackupStorages[0].UUID = "" }, `backupStorages[0]: uuid "" is not 32 lowercase hex characters`},
		{"bs url", func(s *catalog.Site) { s.BackupStorages[0].URL = "backup" }, `backupStorages[0]: url "backup" must be an absolute directory path`},
		{"bs state", func(s *catalog.Site) { s.BackupStorages[0].State = "On" }, `backupStorages[0]: state "On" must be Enabled or Disabled`},
		{"bs status", func(s *catalog.Site) { s.BackupStorages[0].Status = "On" }, `backupStorages[0]: status "On" must be Connected, Disconnected or Connecting`},
		{"bs clones too many", func(s *catalog.Site) { s.BackupStorages[0].MaxConcurrentClones = 1025 },
			"backupStorages[0]: maxConcurrentClones must be between 1 and 1024"},
		{"bs clones negative", func(s *catalog.Site) { s.BackupStorages[0].MaxConcurrentClones = -1 },
			"backupStorages[0]: maxConcurrentClones must be between 1 and 1024"},
		{"bs zone", func(s *catalog.Site) { s.BackupStorages[0].ZoneUUIDs = []string{zoneA, u(98)} },
			`backupStorages[0]: zoneUuids: "` + u(98) + `" is not a zone of this site`},

		{"l3 l2", func(s *catalog.Site) { s.L3Networks[0].L2NetworkUUID = u(97) }, `l3Networks[0]: l2NetworkUuid "` + u(97) + `" is not an L2 network of this site`},
		{"l3 ipv6", func(s *catalog.Site) { s.L3Networks[0].IPVersion = 6 }, "l3Networks[0]: ipVersion 6 is not supported (IPv4 only)"},
		{"l3 state", func(s *catalog.Site) { s.L3Networks[0].State = "x" }, `l3Networks[0]: state "x" must be Enabled or Disabled`},
		{"l3 strategy", func(s *catalog.Site) { s.L3Networks[0].IPAllocatorStrategy = "Random" },
			`l3Networks[0]: ipAllocatorStrategy "Random" must be RandomIpAllocatorStrategy or FirstAvailableIpAllocatorStrategy`},
		{"l3 dns", func(s *catalog.Site) { s.L3Networks[0].DNS = []string{"dns.example.com"} }, `l3Networks[0]: dns "dns.example.com" is not an IP address`},
		{"range uuid", func(s *catalog.Site) { s.L3Networks[0].IPRanges[0].UUID = "r" }, `l3Networks[0].ipRanges[0]: uuid "r" is not 32 lowercase hex characters`},
		{"range start", func(s *catalog.Site) { s.L3Networks[0].IPRanges[0].StartIP = "10.0.0" }, `l3Networks[0].ipRanges[0]: startIp "10.0.0" is not an IPv4 address`},
		{"range netmask", func(s *catalog.Site) { s.L3Networks[0].IPRanges[0].Netmask = "255.0.255.0" }, `l3Networks[0].ipRanges[0]: netmask "255.0.255.0" is not contiguous`},
		{"range gateway outside", func(s *catalog.Site) { s.L3Networks[0].IPRanges[0].Gateway = "10.0.1.1" },
			"l3Networks[0].ipRanges[0]: startIp 10.0.0.10, endIp 10.0.0.200 and gateway 10.0.1.1 are not all in one subnet of netmask 255.255.255.0"},
		{"ranges overlap", func(s *catalog.Site) {
			s.L3Networks[0].IPRanges = append(s.L3Networks[0].IPRanges,
				catalog.IPRange{UUID: u(96), StartIP: "10.0.0.200", EndIP: "10.0.0.250", Netmask: "255.255.255.0", Gateway: "10.0.0.1"})
		}, "l3Networks[0].ipRanges[1]: range 10.0.0.200-10.0.0.250 overlaps range " + rangeA + " of the same L3 network"},
		{"range inside another", func(s *catalog.Site) {
			s.L3Networks[0].IPRanges = append(s.L3Networks[0].IPRanges,
				catalog.IPRange{UUID: u(96), StartIP: "10.0.0.50", EndIP: "10.0.0.60", Netmask: "255.255.255.0", Gateway: "10.0.0.1"})
		}, "overlaps range " + rangeA},

		{"offering cpu 0", func(s *catalog.Site) { s.InstanceOfferings[0].CPUNum = 0 }, "instanceOfferings[0]: cpuNum must be between 1 and 1024"},
		{"offering cpu 1025", func(s *catalog.Site) { s.InstanceOfferings[0].CPUNum = 1025 }, "instanceOfferings[0]: cpuNum must be between 1 and 1024"},
		{"offering memory", func(s *catalog.Site) { s.InstanceOfferings[0].MemorySize = 0 }, "instanceOfferings[0]: memorySize must be positive"},
		{"offering reserved above memory", func(s *catalog.Site) { s.InstanceOfferings[0].ReservedMemorySize = 5 << 30 },
			"instanceOfferings[0]: reservedMemorySize must be between 0 and memorySize"},
		{"offering host strategy", func(s *catalog.Site) { s.InstanceOfferings[0].AllocatorStrategy = "Random" },
			`instanceOfferings[0]: allocatorStrategy "Random" is not one of DefaultHostAllocatorStrategy`},
		{"offering ps strategy", func(s *catalog.Site) { s.InstanceOfferings[0].PrimaryStorageAllocatorStrategy = "Biggest" },
			`instanceOfferings[0]: primaryStorageAllocatorStrategy "Biggest" is not one of DefaultPrimaryStorageAllocationStrategy`},
		{"offering type", func(s *catalog.Site) { s.InstanceOfferings[0].Type = "Vm" }, `instanceOfferings[0]: type "Vm" must be UserVm or ApplianceVm`},
		{"offering state", func(s *catalog.Site) { s.InstanceOfferings[0].State = "On" }, `instanceOfferings[0]: state "On" must be Enabled or Disabled`},

		{"account uuid", func(s *catalog.Site) { s.Accounts[0].UUID = "a" }, `accounts[0]: uuid "a" is not 32 lowercase hex characters`},
		{"account name twice", func(s *catalog.Site) {
			s.Accounts = append(s.Accounts, catalog.Account{UUID: u(95), Name: "ops", PasswordHash: argonHash})
		}, `accounts[1]: account name "ops" is used twice`},
		{"account type", func(s *catalog.Site) { s.Accounts[0].Type = "Admin" }, `accounts[0]: type "Admin" must be Normal or SystemAdmin`},
		{"account admin", func(s *catalog.Site) { s.Accounts[0].Name = "admin" }, "accounts[0]: the admin account is managed by VMRESTORE_ADMIN_PASSWORD"},
		{"account clear-text password", func(s *catalog.Site) { s.Accounts[0].PasswordHash = "password" },
			"accounts[0]: passwordHash must be an argon2id hash"},
		{"account bcrypt hash", func(s *catalog.Site) { s.Accounts[0].PasswordHash = "$2a$10$abcdefghijklmnopqrstuv" },
			"accounts[0]: passwordHash must be an argon2id hash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := baseSite()
			tc.mod(b)
			s, err := parseSite(t, b)
			if err == nil {
				t.Fatalf("Parse accepted the site; want a problem %q", tc.want)
			}
			if s != nil {
				t.Fatal("a site returned with an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%v\ndoes not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseAcceptsEdgeValues(t *testing.T) {
	tests := []struct {
		name string
		mod  func(s *catalog.Site)
	}{
		{"url with a trailing slash", func(s *catalog.Site) { s.PrimaryStorages[0].URL = "/data/nfs/" }},
		{"url root", func(s *catalog.Site) { s.BackupStorages[0].URL = "/" }},
		{"host cpu 65536", func(s *catalog.Site) { s.Hosts[0].CPUNum = 65536 }},
		{"host without management ip", func(s *catalog.Site) { s.Hosts[0].ManagementIP = "" }},
		{"host local capacity instead of capacityPerHost", func(s *catalog.Site) {
			s.PrimaryStorages[1].CapacityPerHost = 0
			s.Hosts[0].LocalStorageCapacity = 500 << 30
		}},
		{"local storage without totalCapacity", func(s *catalog.Site) { s.PrimaryStorages[1].TotalCapacity = 0 }},
		{"adjacent ranges", func(s *catalog.Site) {
			s.L3Networks[0].IPRanges = append(s.L3Networks[0].IPRanges,
				catalog.IPRange{UUID: u(96), StartIP: "10.0.0.201", EndIP: "10.0.0.254", Netmask: "255.255.255.0", Gateway: "10.0.0.1"})
		}},
		{"same range on two L3 networks", func(s *catalog.Site) {
			l3 := s.L3Networks[0]
			l3.UUID, l3.Name = u(94), "l3-b"
			l3.IPRanges = []catalog.IPRange{l3.IPRanges[0]}
			l3.IPRanges[0].UUID = u(93)
			s.L3Networks = append(s.L3Networks, l3)
		}},
		{"offering reserved equal to memory", func(s *catalog.Site) { s.InstanceOfferings[0].ReservedMemorySize = 4 << 30 }},
		{"offering cpu 1024", func(s *catalog.Site) { s.InstanceOfferings[0].CPUNum = 1024 }},
		{"host in pre-maintenance", func(s *catalog.Site) { s.Hosts[0].State = "PreMaintenance" }},
		{"no accounts", func(s *catalog.Site) { s.Accounts = nil }},
		{"l3 without ranges", func(s *catalog.Site) { s.L3Networks[0].IPRanges = nil }},
		{"bs clones 1024", func(s *catalog.Site) { s.BackupStorages[0].MaxConcurrentClones = 1024 }},
		{"name of 255", func(s *catalog.Site) { s.Zones[0].Name = strings.Repeat("z", 255) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := baseSite()
			tc.mod(b)
			if _, err := parseSite(t, b); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestParseListsEveryProblem(t *testing.T) {
	b := baseSite()
	b.Zones[0].Name = ""
	b.Hosts[0].CPUNum = 0
	b.Accounts[0].Type = "Root"
	_, err := parseSite(t, b)
	if err == nil {
		t.Fatal("accepted")
	}
	want := "3 problems:\n  zones[0]: name is required\n  hosts[0]: cpuNum must be between 1 and 65536\n  accounts[0]: type \"Root\" must be Normal or SystemAdmin"
	if err.Error() != want {
		t.Fatalf("error\n%s\nwant\n%s", err, want)
	}
	// A single problem is written on its own, without the count.
	b = baseSite()
	b.Hosts[0].MemorySize = 0
	_, err = parseSite(t, b)
	if err == nil || err.Error() != "hosts[0]: memorySize must be positive" {
		t.Fatalf("single problem: %v", err)
	}
}

func TestValidateNegativeCapacities(t *testing.T) {
	// Negative sizes cannot be written in a site file (ParseBytes refuses a sign), but
	// Validate is exported and must still refuse them.
	tests := []struct {
		name string
		mod  func(s *catalog.Site)
		want string
	}{
		{"ps total", func(s *catalog.Site) { s.PrimaryStorages[1].TotalCapacity = -1 }, "primaryStorages[1]: capacities cannot be negative"},
		{"ps per host", func(s *catalog.Site) { s.PrimaryStorages[1].CapacityPerHost = -1 }, "primaryStorages[1]: capacities cannot be negative"},
		{"ps reserved", func(s *catalog.Site) { s.PrimaryStorages[0].ReservedCapacity = -1 }, "primaryStorages[0]: capacities cannot be negative"},
		{"cluster reserved", func(s *catalog.Site) { s.Clusters[0].ReservedHostMemory = -1 }, "clusters[0]: over-provisioning ratios and reserved memory cannot be negative"},
		{"host reserved", func(s *catalog.Site) { s.Hosts[0].ReservedMemory = -1 }, "hosts[0]: ratios, reserved memory and capacities cannot be negative"},
		{"host local", func(s *catalog.Site) { s.Hosts[0].LocalStorageCapacity = -1 }, "hosts[0]: ratios, reserved memory and capacities cannot be negative"},
		{"host memory", func(s *catalog.Site) { s.Hosts[0].MemorySize = -1 }, "hosts[0]: memorySize must be positive"},
		{"bs bandwidth", func(s *catalog.Site) { s.BackupStorages[0].BandwidthBytesPerSecond = -1 }, "backupStorages[0]: bandwidthBytesPerSecond cannot be negative"},
		{"offering reserved", func(s *catalog.Site) { s.InstanceOfferings[0].ReservedMemorySize = -1 }, "instanceOfferings[0]: reservedMemorySize must be between 0 and memorySize"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseSite(t, baseSite())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("a parsed site does not validate: %v", err)
			}
			tc.mod(s)
			err = s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	b, err := yaml.Marshal(baseSite())
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(good, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := catalog.LoadFile(good)
	if err != nil || len(s.Hosts) != 1 || s.Hosts[0].State != "Enabled" {
		t.Fatalf("LoadFile = %+v, %v", s, err)
	}

	if _, err := catalog.LoadFile(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "site file:") || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("zones: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.LoadFile(bad); err == nil || !strings.Contains(err.Error(), "site file "+bad+": zones: the site needs at least one zone") {
		t.Fatalf("invalid file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		next := u.Unwrap()
		if next == nil {
			return err
		}
		err = next
	}
}
