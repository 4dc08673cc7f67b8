package demosite

import (
	"fmt"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// Scale describes a synthetic site for benchmarks and scale tests.
type Scale struct {
	Clusters        int
	HostsPerCluster int
	// L2s are spread over the clusters: each cluster attaches L2sPerCluster consecutive L2s,
	// and each L2 carries one L3 with one /16 range.
	L2s           int
	L2sPerCluster int
	// StorageDir is the url of every primary storage (one NFS per cluster).
	StorageDir string
}

// SyntheticUUID returns a deterministic uuid for kind and number i.
func SyntheticUUID(kind byte, i int) string { return fmt.Sprintf("%02x%030x", kind, i) }

// Synthetic builds a large, valid site: sc.Clusters clusters of sc.HostsPerCluster hosts
// (64 cores, 512 GiB), one NFS primary storage per cluster, sc.L2s L2/L3 pairs. The site is
// normalized (defaults applied) and valid.
func Synthetic(sc Scale) *catalog.Site {
	zone := SyntheticUUID(0x01, 0)
	s := &catalog.Site{
		Zones: []catalog.Zone{{UUID: zone, Name: "zone-synthetic"}},
		BackupStorages: []catalog.BackupStorage{{UUID: SyntheticUUID(0x02, 0), Name: "bs", URL: sc.StorageDir,
			ZoneUUIDs: []string{zone}}},
		InstanceOfferings: []catalog.InstanceOffering{
			{UUID: SyntheticUUID(0x03, 0), Name: "default", CPUNum: 2, MemorySize: 4 << 30},
			{UUID: SyntheticUUID(0x03, 1), Name: "least-vm", CPUNum: 2, MemorySize: 4 << 30, AllocatorStrategy: catalog.HostLeastVmPreferred},
		},
	}
	for i := 0; i < sc.L2s; i++ {
		l2 := SyntheticUUID(0x04, i)
		s.L2Networks = append(s.L2Networks, catalog.L2Network{UUID: l2, Name: fmt.Sprintf("l2-%d", i), ZoneUUID: zone})
		// One /22 per L3: 1,021 addresses besides the gateway.
		a, b := i/64, (i%64)*4
		s.L3Networks = append(s.L3Networks, catalog.L3Network{UUID: SyntheticUUID(0x05, i), Name: fmt.Sprintf("l3-%d", i),
			L2NetworkUUID: l2, IPRanges: []catalog.IPRange{{UUID: SyntheticUUID(0x06, i),
				StartIP: fmt.Sprintf("10.%d.%d.2", a, b), EndIP: fmt.Sprintf("10.%d.%d.254", a, b+3),
				Netmask: "255.255.252.0", Gateway: fmt.Sprintf("10.%d.%d.1", a, b)}}})
	}
	for c := 0; c < sc.Clusters; c++ {
		ps := SyntheticUUID(0x07, c)
		s.PrimaryStorages = append(s.PrimaryStorages, catalog.PrimaryStorage{UUID: ps, Name: fmt.Sprintf("ps-%d", c),
			ZoneUUID: zone, Type: catalog.PSNFS, URL: sc.StorageDir, TotalCapacity: 1 << 50})
		cl := catalog.Cluster{UUID: SyntheticUUID(0x08, c), Name: fmt.Sprintf("cluster-%d", c), ZoneUUID: zone,
			PrimaryStorageUUIDs: []string{ps}}
		for k := 0; k < sc.L2sPerCluster && sc.L2s > 0; k++ {
			cl.L2NetworkUUIDs = append(cl.L2NetworkUUIDs, SyntheticUUID(0x04, (c*sc.L2sPerCluster/2+k)%sc.L2s))
		}
		s.Clusters = append(s.Clusters, cl)
		for h := 0; h < sc.HostsPerCluster; h++ {
			n := c*sc.HostsPerCluster + h
			s.Hosts = append(s.Hosts, catalog.Host{UUID: SyntheticUUID(0x09, n), Name: fmt.Sprintf("host-%d", n),
				ClusterUUID: cl.UUID, CPUNum: 64, MemorySize: 512 << 30})
		}
	}
	if err := s.Normalize(); err != nil {
		panic(fmt.Sprintf("synthetic site is invalid: %v", err))
	}
	return s
}
