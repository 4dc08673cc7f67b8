package planspec

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// drillIndex is the small test site with two isolated test networks on its L2 beside the
// production L3 (targetL3).
var (
	testL3A, testL3B = strings.Repeat("7", 32), strings.Repeat("8", 32)
	drillIndex       = func() *catalog.Index {
		s := demosite.Synthetic(demosite.Scale{Clusters: 1, HostsPerCluster: 2, L2s: 1, L2sPerCluster: 1, StorageDir: "/srv/ps"})
		for i, u := range []string{testL3A, testL3B} {
			l3 := s.L3Networks[0] // on the same L2, in the same zone and state
			l3.UUID, l3.Name, l3.Isolated = u, []string{"test-a", "test-b"}[i], true
			// test-a is the production subnet again (an isolated copy, where kept addresses fit).
			l3.IPRanges = []catalog.IPRange{{UUID: strings.Repeat("9", 31) + string(rune('a'+i)), StartIP: []string{"10.0.0.2", "10.98.0.2"}[i],
				EndIP: []string{"10.0.3.254", "10.98.0.254"}[i], Netmask: []string{"255.255.252.0", "255.255.255.0"}[i], Gateway: []string{"10.0.0.1", "10.98.0.1"}[i]}}
			s.L3Networks = append(s.L3Networks, l3)
		}
		return catalog.NewIndex(s, 1)
	}()
)

// twoNicGroup is a group whose VM has a NIC on sourceL3 and one on otherL3.
func twoNicGroup() store.IndexedGroup {
	g := group(1, "web01", day)
	nic := g.VM.Nics[0]
	nic.L3NetworkUUID, nic.IP, nic.Mac, nic.DeviceID = otherL3, "10.0.2.10", "fa:16:3e:00:01:01", 1
	g.VM.Nics = append(g.VM.Nics, nic)
	return g
}

// A drill puts every NIC on a test network: the mapping's own, else the plan's default
// (also for a source network no mapping names); the same plan as a recovery uses the
// production targets, and kept addresses go with the NIC to its network.
func TestDrillMapsEveryNetworkOntoTestNetworks(t *testing.T) {
	g := twoNicGroup()
	spec := baseSpec(g)
	spec.NetworkMapping[0].TestL3NetworkUUID = testL3A
	spec.NetworkMapping[0].IP = "keep"
	spec.TestL3NetworkUUID = testL3B
	in := Input{Catalog: drillIndex, Groups: []store.IndexedGroup{g}, Account: tenant}

	spec.Mode = apiv1.ModeDrill
	items, ec := build(t, spec, in)
	if ec != nil {
		t.Fatal(ec)
	}
	nics := items[0].Request.NICs
	if len(nics) != 2 || nics[0].L3NetworkUUID != testL3A || nics[1].L3NetworkUUID != testL3B {
		t.Fatalf("drill NICs %+v; want %s then %s", nics, testL3A, testL3B)
	}
	if nics[0].StaticIP != "10.0.1.11" {
		t.Errorf("the kept address is %q on the test network; want 10.0.1.11", nics[0].StaticIP)
	}
	got := TestNetworks(spec, drillIndex)
	if len(got) != 2 || got[0] != (apiv1.TestNetwork{SourceL3NetworkUUID: sourceL3, ProductionL3NetworkUUID: targetL3, L3NetworkUUID: testL3A, Name: "test-a"}) ||
		got[1] != (apiv1.TestNetwork{L3NetworkUUID: testL3B, Name: "test-b"}) {
		t.Errorf("test networks %+v", got)
	}

	// The same plan as a recovery: production targets, and the unmapped NIC refused.
	spec.Mode = apiv1.ModeRecovery
	if _, ec = build(t, spec, in); ec == nil || !strings.Contains(ec.Details, "NIC 1 is on source l3 network "+otherL3+", which networkMapping does not map") {
		t.Fatalf("recovery with an unmapped NIC: %v", ec)
	}
	spec.NetworkMapping = append(spec.NetworkMapping, apiv1.NetworkMap{SourceL3NetworkUUID: otherL3, TargetL3NetworkUUID: testL3B})
	items, ec = build(t, spec, in)
	if ec != nil {
		t.Fatal(ec)
	}
	if n := items[0].Request.NICs; n[0].L3NetworkUUID != targetL3 || n[1].L3NetworkUUID != testL3B || TestNetworks(spec, drillIndex) != nil {
		t.Errorf("recovery NICs %+v", n)
	}
}

// A drill that would take a production address is refused, naming the field and the
// network, before any item is built.
func TestDrillRefusesProductionNetworks(t *testing.T) {
	g := group(1, "web01", day)
	in := Input{Catalog: drillIndex, Groups: []store.IndexedGroup{g}, Account: tenant}
	cases := []struct {
		name   string
		change func(s *apiv1.PlanSpec)
		want   string
	}{
		{"no test network", func(s *apiv1.PlanSpec) {}, "networkMapping[0].testL3NetworkUuid is not set and the plan has no default testL3NetworkUuid"},
		{"mapping's test network is production", func(s *apiv1.PlanSpec) { s.NetworkMapping[0].TestL3NetworkUUID = targetL3 },
			"networkMapping[0].testL3NetworkUuid is l3 network l3-0 (" + targetL3 + "), which is not an isolated test network"},
		{"default test network is production", func(s *apiv1.PlanSpec) { s.TestL3NetworkUUID = targetL3 }, "testL3NetworkUuid is l3 network l3-0"},
		{"test network unknown", func(s *apiv1.PlanSpec) { s.TestL3NetworkUUID = otherL3 }, `testL3NetworkUuid "` + otherL3 + `" is not an l3 network`},
		{"unknown mode", func(s *apiv1.PlanSpec) { s.Mode = "rehearsal" }, `mode "rehearsal" must be recovery or drill`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := baseSpec(g)
			spec.Mode = apiv1.ModeDrill
			c.change(spec)
			items, ec := build(t, spec, in)
			if ec == nil {
				t.Fatalf("accepted (%d items); want a refusal containing %q", len(items), c.want)
			}
			if ec.Code != zstack.CodeInvalidArgument || !strings.Contains(ec.Details, c.want) {
				t.Fatalf("got %s %q; want SYS.1007 containing %q", ec.Code, ec.Details, c.want)
			}
		})
	}
}
