package catalog_test

import (
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

func indexOf(tb testing.TB, mod func(s *catalog.Site)) *catalog.Index {
	tb.Helper()
	b := baseSite()
	if mod != nil {
		mod(b)
	}
	s, err := parseSite(tb, b)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return catalog.NewIndex(s, 7)
}

func TestNewIndexLookups(t *testing.T) {
	ix := indexOf(t, nil)
	if ix.Version != 7 || ix.Site == nil {
		t.Fatalf("version %d", ix.Version)
	}
	if ix.Zones[zoneA].Name != "zone-a" || ix.Clusters[clA].Name != "cluster-a" || ix.Hosts[hostA].Name != "host-a" ||
		ix.PrimaryStorages[psNFS].Name != "nfs" || ix.BackupStorages[bsA].Name != "bs" || ix.L2Networks[l2A].Name != "l2-a" ||
		ix.L3Networks[l3A].Name != "l3-a" || ix.InstanceOfferings[offerA].Name != "small" {
		t.Fatal("a lookup by uuid failed")
	}
	// Lookups point into the site, not at copies.
	if ix.Hosts[hostA] != &ix.Site.Hosts[0] {
		t.Fatal("Hosts does not point into the site")
	}
	if hs := ix.HostsByCluster[clA]; len(hs) != 1 || hs[0].UUID != hostA {
		t.Fatalf("HostsByCluster = %v", hs)
	}
	if cs := ix.ClustersByL2[l2A]; len(cs) != 1 || cs[0].UUID != clA {
		t.Fatalf("ClustersByL2 = %v", cs)
	}
	if ps := ix.StoragesByCluster[clA]; len(ps) != 2 || ps[0].UUID != psNFS || ps[1].UUID != psLocal {
		t.Fatalf("StoragesByCluster = %v", ps)
	}
	if cs := ix.ClustersByStorage[psB]; len(cs) != 1 || cs[0].UUID != clB {
		t.Fatalf("ClustersByStorage = %v", cs)
	}
	if rs := ix.Ranges[l3A]; len(rs) != 1 || rs[0].UUID != rangeA || rs[0].Size() != 191 {
		t.Fatalf("Ranges = %+v", rs)
	}
	if z := ix.ZoneOfHost(ix.Hosts[hostA]); z != zoneA {
		t.Fatalf("ZoneOfHost = %q", z)
	}
	if z := ix.ZoneOfHost(&catalog.Host{ClusterUUID: u(99)}); z != "" {
		t.Fatalf("ZoneOfHost of an orphan = %q", z)
	}
}

func TestHostCapacity(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name    string
		cluster *catalog.Cluster // nil: the host's cluster is unknown
		host    catalog.Host
		want    catalog.HostCapacity
	}{
		{"defaults: cpu x10, memory x1 minus 1 GiB",
			&catalog.Cluster{CPUOverProvisioningRatio: 10, MemoryOverProvisioningRatio: 1, ReservedHostMemory: gib},
			catalog.Host{CPUNum: 32, MemorySize: 128 * gib}, catalog.HostCapacity{CPU: 320, Memory: 127 * gib}},
		{"cluster ratios",
			&catalog.Cluster{CPUOverProvisioningRatio: 2.5, MemoryOverProvisioningRatio: 1.5, ReservedHostMemory: 4 * gib},
			catalog.Host{CPUNum: 3, MemorySize: 10 * gib}, catalog.HostCapacity{CPU: 7, Memory: 11 * gib}},
		{"host overrides the cluster",
			&catalog.Cluster{CPUOverProvisioningRatio: 10, MemoryOverProvisioningRatio: 1, ReservedHostMemory: gib},
			catalog.Host{CPUNum: 8, MemorySize: 16 * gib, CPUOverProvisioningRatio: 1, MemoryOverProvisioningRatio: 2, ReservedMemory: 2 * gib},
			catalog.HostCapacity{CPU: 8, Memory: 30 * gib}},
		{"reserved larger than memory gives zero, not negative",
			&catalog.Cluster{CPUOverProvisioningRatio: 10, MemoryOverProvisioningRatio: 1, ReservedHostMemory: 8 * gib},
			catalog.Host{CPUNum: 1, MemorySize: 4 * gib}, catalog.HostCapacity{CPU: 10, Memory: 0}},
		{"unknown cluster falls back to ZStack defaults", nil,
			catalog.Host{CPUNum: 4, MemorySize: 8 * gib}, catalog.HostCapacity{CPU: 40, Memory: 7 * gib}},
		{"fractional cpu is floored",
			&catalog.Cluster{CPUOverProvisioningRatio: 1.3, MemoryOverProvisioningRatio: 1, ReservedHostMemory: gib},
			catalog.Host{CPUNum: 3, MemorySize: 2 * gib}, catalog.HostCapacity{CPU: 3, Memory: gib}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := &catalog.Index{Clusters: map[string]*catalog.Cluster{}}
			h := tc.host
			h.ClusterUUID = clA
			if tc.cluster != nil {
				ix.Clusters[clA] = tc.cluster
			}
			if got := ix.HostCapacity(&h); got != tc.want {
				t.Fatalf("HostCapacity = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestHostCapacityFromParsedSite(t *testing.T) {
	ix := indexOf(t, nil)
	got := ix.HostCapacity(ix.Hosts[hostA])
	if got != (catalog.HostCapacity{CPU: 320, Memory: 127 << 30}) {
		t.Fatalf("HostCapacity = %+v", got)
	}
}

func TestStorageCapacity(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name          string
		ps            catalog.PrimaryStorage
		host          *catalog.Host
		total, reserv int64
	}{
		{"shared", catalog.PrimaryStorage{Type: catalog.PSNFS, TotalCapacity: 100 * gib, OverProvisioningRatio: 1, ReservedCapacity: gib}, nil, 100 * gib, gib},
		{"shared ignores the host", catalog.PrimaryStorage{Type: catalog.PSCeph, TotalCapacity: 100 * gib, CapacityPerHost: 5 * gib, OverProvisioningRatio: 1, ReservedCapacity: gib},
			&catalog.Host{LocalStorageCapacity: 7 * gib}, 100 * gib, gib},
		{"over-provisioned", catalog.PrimaryStorage{Type: catalog.PSSharedBlock, TotalCapacity: 100 * gib, OverProvisioningRatio: 2.5, ReservedCapacity: 0}, nil, 250 * gib, 0},
		{"local per host", catalog.PrimaryStorage{Type: catalog.PSLocalStorage, TotalCapacity: 999 * gib, CapacityPerHost: 50 * gib, OverProvisioningRatio: 1, ReservedCapacity: gib},
			&catalog.Host{}, 50 * gib, gib},
		{"local, no host given", catalog.PrimaryStorage{Type: catalog.PSLocalStorage, CapacityPerHost: 50 * gib, OverProvisioningRatio: 1}, nil, 50 * gib, 0},
		{"local, the host's own capacity", catalog.PrimaryStorage{Type: catalog.PSLocalStorage, CapacityPerHost: 50 * gib, OverProvisioningRatio: 2, ReservedCapacity: gib},
			&catalog.Host{LocalStorageCapacity: 10 * gib}, 20 * gib, gib},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := &catalog.Index{}
			total, reserved := ix.StorageCapacity(&tc.ps, tc.host)
			if total != tc.total || reserved != tc.reserv {
				t.Fatalf("StorageCapacity = %d, %d; want %d, %d", total, reserved, tc.total, tc.reserv)
			}
		})
	}
}

func TestHostUsable(t *testing.T) {
	tests := []struct {
		name string
		mod  func(s *catalog.Site)
		want bool
	}{
		{"all enabled and connected", nil, true},
		{"host disabled", func(s *catalog.Site) { s.Hosts[0].State = "Disabled" }, false},
		{"host in maintenance", func(s *catalog.Site) { s.Hosts[0].State = "Maintenance" }, false},
		{"host pre-maintenance", func(s *catalog.Site) { s.Hosts[0].State = "PreMaintenance" }, false},
		{"host disconnected", func(s *catalog.Site) { s.Hosts[0].Status = "Disconnected" }, false},
		{"host connecting", func(s *catalog.Site) { s.Hosts[0].Status = "Connecting" }, false},
		{"cluster disabled", func(s *catalog.Site) { s.Clusters[0].State = "Disabled" }, false},
		{"zone disabled", func(s *catalog.Site) { s.Zones[0].State = "Disabled" }, false},
		{"another zone disabled", func(s *catalog.Site) { s.Zones[1].State = "Disabled" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := indexOf(t, tc.mod)
			if got := ix.HostUsable(ix.Hosts[hostA]); got != tc.want {
				t.Fatalf("HostUsable = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("unknown cluster", func(t *testing.T) {
		ix := indexOf(t, nil)
		if ix.HostUsable(&catalog.Host{ClusterUUID: u(99), State: "Enabled", Status: "Connected"}) {
			t.Fatal("a host of an unknown cluster is usable")
		}
	})
	t.Run("cluster of an unknown zone", func(t *testing.T) {
		ix := indexOf(t, nil)
		ix.Clusters[clA] = &catalog.Cluster{UUID: clA, ZoneUUID: u(99), State: "Enabled"}
		if ix.HostUsable(ix.Hosts[hostA]) {
			t.Fatal("a host in an unknown zone is usable")
		}
	})
}

func TestStorageUsable(t *testing.T) {
	tests := []struct {
		state, status string
		want          bool
	}{
		{"Enabled", "Connected", true},
		{"Disabled", "Connected", false},
		{"Enabled", "Disconnected", false},
		{"Enabled", "Connecting", false},
		{"", "", false},
	}
	for _, tc := range tests {
		if got := catalog.StorageUsable(&catalog.PrimaryStorage{State: tc.state, Status: tc.status}); got != tc.want {
			t.Errorf("StorageUsable(%s, %s) = %v", tc.state, tc.status, got)
		}
	}
}
