package placement_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/placement"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

func u(kind byte, i int) string { return fmt.Sprintf("%02x%030x", kind, i) }

var (
	zone     = u(1, 0)
	clA, clB = u(2, 0), u(2, 1)
	l2A, l2B = u(3, 0), u(3, 1)
	l3A, l3B = u(4, 0), u(4, 1)
	l3Orphan = u(4, 2)
	nfsA     = u(5, 0)
	nfsA2    = u(5, 1)
	localB   = u(5, 2)
)

func hostID(i int) string { return u(6, i) }

// testSite: cluster A (hosts 0-2, NFS nfsA and nfsA2, L2 A and B), cluster B (hosts 3-4,
// LocalStorage, L2 A only). Hosts have 8 cores (ratio 1) and 17 GiB (16 GiB after the reserve).
func testSite(edit func(*catalog.Site)) *catalog.Site {
	s := &catalog.Site{
		Zones: []catalog.Zone{{UUID: zone, Name: "z"}},
		Clusters: []catalog.Cluster{
			{UUID: clA, Name: "a", ZoneUUID: zone, CPUOverProvisioningRatio: 1, L2NetworkUUIDs: []string{l2A, l2B}, PrimaryStorageUUIDs: []string{nfsA, nfsA2}},
			{UUID: clB, Name: "b", ZoneUUID: zone, CPUOverProvisioningRatio: 1, L2NetworkUUIDs: []string{l2A}, PrimaryStorageUUIDs: []string{localB}},
		},
		PrimaryStorages: []catalog.PrimaryStorage{
			{UUID: nfsA, Name: "nfs-a", ZoneUUID: zone, Type: catalog.PSNFS, URL: "/srv/a", TotalCapacity: 101 << 30},
			{UUID: nfsA2, Name: "nfs-a2", ZoneUUID: zone, Type: catalog.PSNFS, URL: "/srv/a2", TotalCapacity: 51 << 30},
			{UUID: localB, Name: "local-b", ZoneUUID: zone, Type: catalog.PSLocalStorage, URL: "/srv/b", CapacityPerHost: 21 << 30},
		},
		L2Networks: []catalog.L2Network{{UUID: l2A, Name: "l2a", ZoneUUID: zone}, {UUID: l2B, Name: "l2b", ZoneUUID: zone}, {UUID: u(3, 2), Name: "l2-orphan", ZoneUUID: zone}},
		L3Networks: []catalog.L3Network{
			{UUID: l3A, Name: "l3a", L2NetworkUUID: l2A, IPRanges: []catalog.IPRange{{UUID: u(7, 0), StartIP: "10.0.0.10", EndIP: "10.0.0.20", Netmask: "255.255.255.0", Gateway: "10.0.0.1"}}},
			{UUID: l3B, Name: "l3b", L2NetworkUUID: l2B, IPRanges: []catalog.IPRange{{UUID: u(7, 1), StartIP: "10.1.0.10", EndIP: "10.1.0.20", Netmask: "255.255.255.0", Gateway: "10.1.0.1"}}},
			{UUID: l3Orphan, Name: "orphan", L2NetworkUUID: u(3, 2)},
		},
	}
	for i := 0; i < 5; i++ {
		cl := clA
		if i >= 3 {
			cl = clB
		}
		s.Hosts = append(s.Hosts, catalog.Host{UUID: hostID(i), Name: fmt.Sprintf("h%d", i), ClusterUUID: cl, CPUNum: 8, MemorySize: 17 << 30})
	}
	if edit != nil {
		edit(s)
	}
	if err := s.Normalize(); err != nil {
		panic(err)
	}
	return s
}

type fixture struct {
	st *store.Store
	ix *catalog.Index
}

func newFixture(tb testing.TB, site *catalog.Site) *fixture {
	tb.Helper()
	r := redistest.Start(tb)
	st := store.New(r.Client())
	f := &fixture{st: st}
	f.load(tb, site)
	return f
}

func (f *fixture) load(tb testing.TB, site *catalog.Site) {
	tb.Helper()
	ctx := context.Background()
	if _, err := f.st.SaveCatalog(ctx, site); err != nil {
		tb.Fatal(err)
	}
	ix, err := f.st.LoadCatalog(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	f.ix = ix
}

func vm(cpu, memGiB int64, l3s ...string) placement.Request {
	return placement.Request{CPU: cpu, Memory: memGiB << 30, L3NetworkUUIDs: l3s,
		Volumes: []placement.Volume{{UUID: u(9, 0), Size: 1 << 30, Root: true}}}
}

func (f *fixture) place(tb testing.TB, job string, req placement.Request) (*placement.Result, error) {
	tb.Helper()
	return placement.Place(context.Background(), f.ix, f.st, job, req)
}

func (f *fixture) mustPlace(tb testing.TB, job string, req placement.Request) *placement.Result {
	tb.Helper()
	r, err := f.place(tb, job, req)
	if err != nil {
		tb.Fatalf("place %s: %v", job, err)
	}
	return r
}

func (f *fixture) checkNoDrift(tb testing.TB) {
	tb.Helper()
	p, err := f.st.CheckInvariants(context.Background(), f.ix)
	if err != nil || len(p) > 0 {
		tb.Fatalf("invariants: %v %v", p, err)
	}
}

func TestFilterRefusalsNameTheFilter(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(*catalog.Site)
		req     placement.Request
		filter  string
		details string
	}{
		{"L3 whose L2 no cluster attaches", nil, vm(1, 1, l3Orphan), placement.FilterL2Attachment, "no cluster is attached to the L2 networks of all l3 networks"},
		{"two L3s no cluster attaches both", func(s *catalog.Site) { s.Clusters[0].L2NetworkUUIDs = []string{l2B} }, vm(1, 1, l3A, l3B), placement.FilterL2Attachment, "no cluster is attached"},
		{"designated host disabled", func(s *catalog.Site) { s.Hosts[0].State = catalog.StateDisabled },
			func() placement.Request { r := vm(1, 1, l3A); r.HostUUID = hostID(0); return r }(), placement.FilterDesignation, "is Disabled and Connected"},
		{"designated host outside the L3's clusters", nil,
			func() placement.Request { r := vm(1, 1, l3B); r.HostUUID = hostID(3); return r }(), placement.FilterDesignation, "not attached to the L2 networks"},
		{"every host of the cluster disconnected", func(s *catalog.Site) {
			for i := range s.Hosts {
				s.Hosts[i].Status = catalog.StatusDisconnected
			}
		}, func() placement.Request { r := vm(1, 1, l3A); r.ClusterUUID = clA; return r }(), placement.FilterDesignation, "no Enabled and Connected host found in cluster[uuid:" + clA + "] (3 hosts there, none usable)"},
		{"cpu", nil, vm(9, 1, l3A), placement.FilterCapacity, "no host having cpu[9], memory[1073741824 bytes] found"},
		{"memory over the reserve", nil, vm(1, 17, l3A), placement.FilterCapacity, "the most free is cpu[8], memory[17179869184 bytes]"},
		{"storage", nil, func() placement.Request {
			r := vm(1, 1, l3B)
			r.Volumes[0].Size = 200 << 30
			return r
		}(), placement.FilterStorage, "no primary storage can hold the volumes (1 volumes, 214748364800 bytes) on any of 3 hosts with enough cpu and memory: no Enabled, Connected primary storage attached to cluster[uuid:" + clA + "] has 214748364800 bytes free for the root volume (available: " + nfsA + ": 107374182400 bytes, " + nfsA2 + ": 53687091200 bytes)"},
		{"requested storage not attached", nil, func() placement.Request { r := vm(1, 1, l3B); r.RootStorage = localB; return r }(),
			placement.FilterStorage, "primary storage[uuid:" + localB + "] for the root volume is not attached to cluster"},
		{"avoid list", nil, func() placement.Request {
			r := vm(1, 1, l3B)
			r.Avoid = []string{hostID(0), hostID(1), hostID(2)}
			return r
		}(), placement.FilterAvoid, "every host that fits (3) is in the avoid list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, testSite(tc.edit))
			_, err := f.place(t, u(8, 1), tc.req)
			var ref *placement.Refusal
			if !errors.As(err, &ref) {
				t.Fatalf("want a refusal, got %v", err)
			}
			if ref.Filter != tc.filter || !strings.Contains(ref.Details, tc.details) {
				t.Fatalf("refusal %s: %q\nwant %s containing %q", ref.Filter, ref.Details, tc.filter, tc.details)
			}
			f.checkNoDrift(t)
		})
	}
}

func TestStorageDownIsRefusedWithTheProbeReason(t *testing.T) {
	f := newFixture(t, testSite(nil))
	ctx := context.Background()
	f.st.MarkStorageDown(ctx, nfsA, "directory /srv/a is not reachable")
	f.st.MarkStorageDown(ctx, nfsA2, "directory /srv/a2 is not writable")
	_, err := f.place(t, u(8, 1), vm(1, 1, l3B))
	var ref *placement.Refusal
	if !errors.As(err, &ref) || ref.Filter != placement.FilterStorage || !strings.Contains(ref.Details, "not Connected (directory /srv/a2 is not writable)") {
		t.Fatalf("want a storage refusal with the reason, got %v", err)
	}
	f.st.MarkStorageUp(ctx, nfsA2)
	r := f.mustPlace(t, u(8, 2), vm(1, 1, l3B))
	if r.VolumeStorage[u(9, 0)] != nfsA2 {
		t.Fatalf("only nfs-a2 is up, volume went to %s", r.VolumeStorage[u(9, 0)])
	}
}

func TestDesignatedHostAndStrategyNames(t *testing.T) {
	f := newFixture(t, testSite(nil))
	r := vm(1, 1, l3A)
	r.HostUUID = hostID(4)
	res := f.mustPlace(t, u(8, 1), r)
	if res.HostUUID != hostID(4) || res.ClusterUUID != clB || res.ZoneUUID != zone || res.AllocatorStrategy != catalog.HostDesignated {
		t.Fatalf("designated: %+v", res)
	}
	if res.VolumeStorage[u(9, 0)] != localB {
		t.Fatalf("cluster b only has local storage: %+v", res.VolumeStorage)
	}
	d := f.mustPlace(t, u(8, 2), vm(1, 1, l3A))
	if d.AllocatorStrategy != catalog.HostDefault {
		t.Fatalf("default strategy name: %q", d.AllocatorStrategy)
	}
}

func TestDefaultStrategySpreads(t *testing.T) {
	f := newFixture(t, testSite(nil))
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		seen[f.mustPlace(t, u(8, i), vm(1, 1, l3A)).HostUUID]++
	}
	if len(seen) < 3 {
		t.Fatalf("Default shuffles candidates: 20 VMs landed on %d hosts only: %v", len(seen), seen)
	}
	f.checkNoDrift(t)
}

func TestLeastVmPreferredFillsEvenly(t *testing.T) {
	f := newFixture(t, testSite(nil))
	count := map[string]int{}
	for i := 0; i < 10; i++ {
		r := vm(1, 1, l3A)
		r.HostStrategy = catalog.HostLeastVmPreferred
		res := f.mustPlace(t, u(8, i), r)
		count[res.HostUUID]++
		min, max := 100, 0
		for h := 0; h < 5; h++ {
			n := count[hostID(h)]
			min, max = minInt(min, n), maxInt(max, n)
		}
		if max-min > 1 {
			t.Fatalf("after %d VMs the VM counts are uneven: %v", i+1, count)
		}
		if res.AllocatorStrategy != catalog.HostLeastVmPreferred {
			t.Fatalf("strategy %q", res.AllocatorStrategy)
		}
	}
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func TestLastHostPreferredUsesTheSourceHostWhileItFits(t *testing.T) {
	f := newFixture(t, testSite(nil))
	for i := 0; i < 10; i++ {
		r := vm(2, 1, l3A)
		r.HostStrategy, r.LastHostUUID = catalog.HostLastHostPreferred, hostID(1)
		res := f.mustPlace(t, u(8, i), r)
		// Host 1 has 8 cores: four 2-core VMs fit, then others take the rest.
		if i < 4 && res.HostUUID != hostID(1) {
			t.Fatalf("VM %d went to %s while the source host had room", i, res.HostUUID)
		}
		if i >= 4 && res.HostUUID == hostID(1) {
			t.Fatalf("VM %d over-committed the source host", i)
		}
	}
	f.checkNoDrift(t)
}

func TestStorageStrategiesAndSplitVolumes(t *testing.T) {
	f := newFixture(t, testSite(nil))
	// MaximumAvailableCapacity: nfs-a (100 GiB usable) before nfs-a2 (50 GiB).
	r := vm(1, 1, l3B)
	r.StorageStrategy = catalog.PSMaximumAvailable
	if got := f.mustPlace(t, u(8, 1), r).VolumeStorage[u(9, 0)]; got != nfsA {
		t.Fatalf("MaximumAvailableCapacity chose %s", got)
	}
	// LeastVolume: nfs-a now has a volume, nfs-a2 none.
	r.StorageStrategy = catalog.PSLeastVolume
	if got := f.mustPlace(t, u(8, 2), r).VolumeStorage[u(9, 0)]; got != nfsA2 {
		t.Fatalf("LeastVolume chose %s", got)
	}
	// Root and data volumes on the storages the request names.
	split := vm(1, 1, l3B)
	split.Volumes = append(split.Volumes, placement.Volume{UUID: u(9, 1), Size: 5 << 30})
	split.RootStorage, split.DataStorage = nfsA2, nfsA
	res := f.mustPlace(t, u(8, 3), split)
	if res.VolumeStorage[u(9, 0)] != nfsA2 || res.VolumeStorage[u(9, 1)] != nfsA {
		t.Fatalf("split volumes: %+v", res.VolumeStorage)
	}
	// Data volumes follow the root when it has room, else go elsewhere.
	big := vm(1, 1, l3B)
	big.RootStorage = nfsA2
	big.Volumes = append(big.Volumes, placement.Volume{UUID: u(9, 2), Size: 60 << 30})
	_, err := f.place(t, u(8, 4), big)
	var ref *placement.Refusal
	if !errors.As(err, &ref) || !strings.Contains(ref.Details, "primary storage[uuid:"+nfsA2+"]") {
		t.Fatalf("root storage without room for root+data must be refused naming it: %v", err)
	}
	free := vm(1, 1, l3B)
	free.Volumes = append(free.Volumes, placement.Volume{UUID: u(9, 2), Size: 60 << 30})
	res = f.mustPlace(t, u(8, 5), free)
	if res.VolumeStorage[u(9, 2)] != nfsA {
		t.Fatalf("a 60 GiB data volume only fits nfs-a: %+v", res.VolumeStorage)
	}
	f.checkNoDrift(t)
}

func TestLocalStorageCapacityIsPerHost(t *testing.T) {
	f := newFixture(t, testSite(nil))
	// Each cluster-b host has 20 GiB of local storage above the reserve: two 10 GiB roots.
	hosts := map[string]int{}
	for i := 0; i < 4; i++ {
		r := vm(1, 1, l3A)
		r.ClusterUUID = clB
		r.Volumes[0].Size = 10 << 30
		res := f.mustPlace(t, u(8, i), r)
		hosts[res.HostUUID]++
	}
	if hosts[hostID(3)] != 2 || hosts[hostID(4)] != 2 {
		t.Fatalf("local storage is per host: %v", hosts)
	}
	r := vm(1, 1, l3A)
	r.ClusterUUID = clB
	r.Volumes[0].Size = 10 << 30
	_, err := f.place(t, u(8, 9), r)
	var ref *placement.Refusal
	if !errors.As(err, &ref) || ref.Filter != placement.FilterStorage || !strings.Contains(ref.Details, "on host[uuid:") {
		t.Fatalf("full local storage: %v", err)
	}
}

func TestOverProvisioningAndReservedMemoryPerHost(t *testing.T) {
	f := newFixture(t, testSite(func(s *catalog.Site) {
		s.Hosts[0].CPUOverProvisioningRatio = 4 // 32 cores
		s.Hosts[0].ReservedMemory = 9 << 30     // 8 GiB left
	}))
	r := vm(20, 8, l3A)
	if res := f.mustPlace(t, u(8, 1), r); res.HostUUID != hostID(0) {
		t.Fatalf("only host 0 has 20 cores: %s", res.HostUUID)
	}
	r = vm(1, 1, l3A)
	r.HostUUID = hostID(0)
	if _, err := f.place(t, u(8, 2), r); err == nil {
		t.Fatalf("host 0's 8 GiB are taken; the reserve must not be used")
	}
}

func TestReservationIsIdempotentAndReleasedOnce(t *testing.T) {
	f := newFixture(t, testSite(nil))
	ctx := context.Background()
	a := f.mustPlace(t, u(8, 1), vm(4, 4, l3A))
	b := f.mustPlace(t, u(8, 1), vm(4, 4, l3A)) // a re-run of the same job
	if a.HostUUID != b.HostUUID || a.VolumeStorage[u(9, 0)] != b.VolumeStorage[u(9, 0)] {
		t.Fatalf("a re-run must get its reservation back: %+v vs %+v", a, b)
	}
	use, _ := f.st.Usage(ctx, []string{store.FieldHostCPU(a.HostUUID)})
	if use[0].Used != 4 {
		t.Fatalf("the host has %d cores in use after two placements of one job, want 4", use[0].Used)
	}
	for i := 0; i < 2; i++ {
		released, err := f.st.Release(ctx, u(8, 1))
		if err != nil || released != (i == 0) {
			t.Fatalf("release %d: %v %v", i, released, err)
		}
	}
	use, _ = f.st.Usage(ctx, []string{store.FieldHostCPU(a.HostUUID)})
	if use[0].Used != 0 {
		t.Fatalf("after release %d cores remain in use", use[0].Used)
	}
	f.checkNoDrift(t)
}

func TestCatalogChangesKeepReservations(t *testing.T) {
	site := testSite(nil)
	f := newFixture(t, site)
	ctx := context.Background()
	r := vm(1, 1, l3A)
	r.HostUUID = hostID(0)
	f.mustPlace(t, u(8, 1), r)

	// Disable host 0 and add host 5: the reservation stays, new VMs avoid host 0 and may use 5.
	site.Hosts[0].State = catalog.StateDisabled
	site.Hosts = append(site.Hosts, catalog.Host{UUID: hostID(5), Name: "h5", ClusterUUID: clA, CPUNum: 8, MemorySize: 17 << 30,
		State: catalog.StateEnabled, Status: catalog.StatusConnected, CPUSockets: 1})
	f.load(t, site)
	use, _ := f.st.Usage(ctx, []string{store.FieldHostCPU(hostID(0))})
	if use[0].Used != 1 || use[0].Limit != -1 {
		t.Fatalf("disabled host: %+v (its reservation must stay, its limit go to -1)", use[0])
	}
	seen := map[string]bool{}
	for i := 0; i < 30; i++ {
		res := f.mustPlace(t, u(8, 10+i), vm(1, 1, l3A))
		seen[res.HostUUID] = true
		if res.HostUUID == hostID(0) {
			t.Fatalf("placed on the disabled host")
		}
	}
	if !seen[hostID(5)] {
		t.Fatalf("the added host was never used: %v", seen)
	}
	f.checkNoDrift(t)
}
