package planspec

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// A small recovery site: one zone, one cluster of two hosts, one NFS storage, one L3
// (10.0.0.0/22), two offerings.
var (
	testSite   = demosite.Synthetic(demosite.Scale{Clusters: 1, HostsPerCluster: 2, L2s: 1, L2sPerCluster: 1, StorageDir: "/srv/ps"})
	testIndex  = catalog.NewIndex(testSite, 1)
	targetL3   = demosite.SyntheticUUID(0x05, 0)
	offering   = demosite.SyntheticUUID(0x03, 0)
	zoneUUID   = demosite.SyntheticUUID(0x01, 0)
	hostUUID   = demosite.SyntheticUUID(0x09, 1)
	sourceL3   = strings.Repeat("5", 32)
	otherL3    = strings.Repeat("6", 32)
	storageBS  = demosite.SyntheticUUID(0x02, 0)
	otherBS    = strings.Repeat("b", 32)
	tenant     = strings.Repeat("a", 32)
	otherOwner = strings.Repeat("c", 32)
)

// group makes an indexed group of a source VM with one NIC on sourceL3 and a root volume.
func group(n int, vmName string, created time.Time) store.IndexedGroup {
	return store.IndexedGroup{
		Group: backup.Group{
			GroupUUID: fmt.Sprintf("%032x", 0x1000+n), Name: fmt.Sprintf("%s-%d", vmName, n), CreateDate: created, AccountUUID: tenant,
			VM: backup.SourceVM{UUID: fmt.Sprintf("%032x", 0x2000+len(vmName)), Name: vmName, CPUNum: 2, MemorySize: 2 << 30,
				Nics: []backup.SourceNic{{L3NetworkUUID: sourceL3, IP: fmt.Sprintf("10.0.1.%d", 10+n), Mac: fmt.Sprintf("fa:16:3e:00:00:%02x", n), DeviceID: 0}}},
			Volumes: []backup.Volume{{UUID: fmt.Sprintf("%032x", 0x3000+n), Type: "Root", Format: "qcow2", Size: 10 << 30, ActualSize: 1 << 30, File: "root.qcow2"}},
		},
		BackupStorageUUIDs: []string{storageBS},
	}
}

var day = time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)

// baseSpec restores the given groups with the source sizes, mapping sourceL3 to the site's L3.
func baseSpec(groups ...store.IndexedGroup) *apiv1.PlanSpec {
	s := &apiv1.PlanSpec{Name: "dr", Defaults: apiv1.PlanDefaults{KeepSourceSize: true},
		NetworkMapping: []apiv1.NetworkMap{{SourceL3NetworkUUID: sourceL3, TargetL3NetworkUUID: targetL3}}}
	for _, g := range groups {
		s.Groups = append(s.Groups, g.GroupUUID)
	}
	return s
}

func build(t *testing.T, spec *apiv1.PlanSpec, in Input) ([]store.PlanItem, *zstack.ErrorCode) {
	t.Helper()
	if in.Catalog == nil {
		in.Catalog = testIndex
	}
	items, err := Build(context.Background(), spec, in)
	if err == nil {
		return items, nil
	}
	ec, ok := zstack.AsErrorCode(err)
	if !ok {
		t.Fatalf("Build answered %T %v; want a *zstack.ErrorCode", err, err)
	}
	return nil, ec
}

// Every rule of the spec itself is checked before any group is looked at, with an error
// that names the field.
func TestBuildRefusesAnInvalidSpec(t *testing.T) {
	g := group(1, "web01", day)
	in := Input{Groups: []store.IndexedGroup{g}, Account: tenant}
	cases := []struct {
		name   string
		change func(s *apiv1.PlanSpec)
		want   string
	}{
		{"no name", func(s *apiv1.PlanSpec) { s.Name = " " }, "name is required"},
		{"name too long", func(s *apiv1.PlanSpec) { s.Name = strings.Repeat("n", 256) }, "name is required"},
		{"client token too long", func(s *apiv1.PlanSpec) { s.ClientToken = strings.Repeat("t", 129) }, "clientToken is longer than 128"},
		{"no group", func(s *apiv1.PlanSpec) { s.Groups = nil }, "names no group"},
		{"groups and selector", func(s *apiv1.PlanSpec) { s.Selector = &apiv1.PlanSelector{} }, "either groups or a selector"},
		{"concurrency negative", func(s *apiv1.PlanSpec) { s.Concurrency = -1 }, "concurrency -1 must be between 1 and 2000"},
		{"concurrency too high", func(s *apiv1.PlanSpec) { s.Concurrency = MaxConcurrency + 1 }, "concurrency 2001"},
		{"offering and keepSourceSize", func(s *apiv1.PlanSpec) { s.Defaults.InstanceOfferingUUID = offering }, "instanceOfferingUuid or keepSourceSize, not both"},
		{"group not a uuid", func(s *apiv1.PlanSpec) { s.Groups = []string{"web01"} }, `groups: "web01" is not a valid uuid`},
		{"nextTierAfter", func(s *apiv1.PlanSpec) { s.NextTierAfter = "booted" }, `nextTierAfter "booted" must be running`},
		{"group twice", func(s *apiv1.PlanSpec) { s.Groups = append(s.Groups, g.GroupUUID) }, "lists group " + g.GroupUUID + " twice"},
		{"override key not a uuid", func(s *apiv1.PlanSpec) { s.Overrides = map[string]apiv1.PlanOverride{"web01": {}} }, `overrides: key "web01"`},
		{"tier zero", func(s *apiv1.PlanSpec) { s.Tiers = []apiv1.TierRule{{Tier: 0, SourceVMName: "db*"}} }, "tiers[0].tier 0 must be between 1 and 1000"},
		{"tier pattern empty", func(s *apiv1.PlanSpec) { s.Tiers = []apiv1.TierRule{{Tier: 1}} }, `tiers[0].sourceVmName ""`},
		{"tier pattern invalid", func(s *apiv1.PlanSpec) { s.Tiers = []apiv1.TierRule{{Tier: 1, SourceVMName: "db["}} }, `tiers[0].sourceVmName "db["`},
		{"mapping source not a uuid", func(s *apiv1.PlanSpec) { s.NetworkMapping[0].SourceL3NetworkUUID = "prod" }, `networkMapping[0].sourceL3NetworkUuid "prod"`},
		{"mapping target unknown", func(s *apiv1.PlanSpec) { s.NetworkMapping[0].TargetL3NetworkUUID = otherL3 }, "is not an l3 network of the recovery site"},
		{"mapping ip", func(s *apiv1.PlanSpec) { s.NetworkMapping[0].IP = "copy" }, `networkMapping[0].ip "copy" must be keep or allocate`},
		{"mapping mac", func(s *apiv1.PlanSpec) { s.NetworkMapping[0].Mac = "copy" }, `networkMapping[0].mac "copy" must be keep or regenerate`},
		{"mapping twice", func(s *apiv1.PlanSpec) { s.NetworkMapping = append(s.NetworkMapping, s.NetworkMapping[0]) }, "maps source l3 network " + sourceL3 + " a second time"},
		{"web hook private", func(s *apiv1.PlanSpec) { s.WebHook = "http://127.0.0.1:9/hook" }, "webHook http://127.0.0.1:9/hook"},
		{"name template", func(s *apiv1.PlanSpec) { s.Defaults.NameTemplate = "{{range .}}x{{end}}" }, "nameTemplate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := baseSpec(g)
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
	// The base spec itself is valid: the refusals above are the changes'.
	if items, ec := build(t, baseSpec(g), in); ec != nil || len(items) != 1 {
		t.Fatalf("the base spec: %d items, %v", len(items), ec)
	}
}

// A selector picks groups by backup storage and source VM name, keeps the newest per source
// VM when asked, orders them by name then date, and sees only the account's groups.
func TestSelectGroups(t *testing.T) {
	web1old, web1new := group(1, "web01", day), group(2, "web01", day.Add(24*time.Hour))
	db := group(3, "db01", day)
	elsewhere := group(4, "web02", day)
	elsewhere.BackupStorageUUIDs = []string{otherBS}
	foreign := group(5, "web03", day)
	foreign.AccountUUID = otherOwner
	all := []store.IndexedGroup{web1new, db, web1old, elsewhere, foreign}
	names := func(gs []store.IndexedGroup) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out
	}
	cases := []struct {
		name  string
		sel   apiv1.PlanSelector
		admin bool
		want  []string
	}{
		{"everything visible, by name then date", apiv1.PlanSelector{}, false, []string{"db01-3", "web01-1", "web01-2", "web02-4"}},
		{"an administrator sees every account's", apiv1.PlanSelector{}, true, []string{"db01-3", "web01-1", "web01-2", "web02-4", "web03-5"}},
		{"by glob", apiv1.PlanSelector{SourceVMName: "web*"}, false, []string{"web01-1", "web01-2", "web02-4"}},
		{"by backup storage", apiv1.PlanSelector{BackupStorageUUID: otherBS}, false, []string{"web02-4"}},
		{"newest per source VM", apiv1.PlanSelector{SourceVMName: "web01", NewestPerSourceVM: true}, false, []string{"web01-2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := &apiv1.PlanSpec{Name: "p", Selector: &c.sel}
			got, ec := selectGroups(spec, Input{Groups: all, Account: tenant, Admin: c.admin})
			if ec != nil {
				t.Fatal(ec)
			}
			if !slices.Equal(names(got), c.want) {
				t.Fatalf("selected %v, want %v", names(got), c.want)
			}
		})
	}
	if _, ec := selectGroups(&apiv1.PlanSpec{Selector: &apiv1.PlanSelector{SourceVMName: "nothing*"}}, Input{Groups: all, Account: tenant}); ec == nil || ec.Code != zstack.CodeNotFound {
		t.Errorf("a selector that matches nothing: %v, want SYS.1003", ec)
	}
	// Listed groups the account may not see are missing, like unknown ones.
	_, ec := selectGroups(&apiv1.PlanSpec{Groups: []string{web1old.GroupUUID, foreign.GroupUUID}}, Input{Groups: all, Account: tenant})
	if ec == nil || ec.Code != zstack.CodeNotFound || !strings.Contains(ec.Details, foreign.GroupUUID) || strings.Contains(ec.Details, web1old.GroupUUID) {
		t.Errorf("another account's group listed: %v, want SYS.1003 naming only it", ec)
	}
}

// A group's tier is its override's, else the first matching rule's, else one past the
// highest rule, else 1.
func TestTierOf(t *testing.T) {
	rules := []apiv1.TierRule{{Tier: 2, SourceVMName: "db*"}, {Tier: 1, SourceVMName: "db-master"}, {Tier: 5, SourceVMName: "cache*"}}
	cases := []struct {
		vm    string
		rules []apiv1.TierRule
		ov    int
		want  int
	}{
		{"db-master", rules, 0, 2}, // the first match wins, not the lowest tier
		{"cache1", rules, 0, 5},
		{"web01", rules, 0, 6},
		{"web01", rules, 3, 3},
		{"db-master", rules, 9, 9},
		{"web01", nil, 0, 1},
	}
	for _, c := range cases {
		got := tierOf(&apiv1.PlanSpec{Tiers: c.rules}, group(1, c.vm, day), apiv1.PlanOverride{Tier: c.ov})
		if got != c.want {
			t.Errorf("%s (override %d): tier %d, want %d", c.vm, c.ov, got, c.want)
		}
	}
}

// The request of an item: defaults, then the group's override; the network mapping gives
// the L3s and, where it keeps them, the source addresses as system tags.
func TestRequestAppliesDefaultsOverridesAndMapping(t *testing.T) {
	g := group(7, "web01", day)
	g.VM.Nics = append(g.VM.Nics, backup.SourceNic{L3NetworkUUID: otherL3, IP: "192.168.0.7", Mac: "fa:16:3e:00:01:07", DeviceID: 1})
	slices.Reverse(g.VM.Nics) // NICs are taken in deviceId order whatever group.json's order
	mapping := map[string]apiv1.NetworkMap{
		sourceL3: {SourceL3NetworkUUID: sourceL3, TargetL3NetworkUUID: targetL3, IP: "keep", Mac: "keep"},
		otherL3:  {SourceL3NetworkUUID: otherL3, TargetL3NetworkUUID: "f" + targetL3[1:]},
	}
	spec := &apiv1.PlanSpec{Name: "dr", Defaults: apiv1.PlanDefaults{ZoneUUID: zoneUUID, InstanceOfferingUUID: offering, Strategy: zstack.StrategyCreateStopped,
		BootCheck: &job.BootCheck{Mode: job.BootRunning, Timeout: 90 * time.Second}}}

	body, problem := request(spec, g, apiv1.PlanOverride{}, "web01-dr", mapping)
	if problem != "" {
		t.Fatal(problem)
	}
	p := body.Params
	if p.Name != "web01-dr" || p.ZoneUUID != zoneUUID || p.InstanceOfferingUUID != offering || p.CPUNum != nil || p.Strategy != zstack.StrategyCreateStopped {
		t.Errorf("defaults not applied: %+v", p)
	}
	if want := []string{targetL3, "f" + targetL3[1:]}; !slices.Equal(p.L3NetworkUUIDs, want) || p.DefaultL3NetworkUUID != targetL3 {
		t.Errorf("l3NetworkUuids %v (default %s), want %v in deviceId order", p.L3NetworkUUIDs, p.DefaultL3NetworkUUID, want)
	}
	wantTags := []string{"staticIp::" + targetL3 + "::10.0.1.17", "customMac::" + targetL3 + "::fa:16:3e:00:00:07", "bootCheck::running::90"}
	if !slices.Equal(body.SystemTags, wantTags) {
		t.Errorf("system tags %q, want %q", body.SystemTags, wantTags)
	}
	if !strings.Contains(p.Description, g.GroupUUID) || !strings.Contains(p.Description, `plan "dr"`) {
		t.Errorf("description %q names neither the group nor the plan", p.Description)
	}

	// An override's host replaces the defaults' zone; its size replaces the offering; its
	// boot check replaces the default one.
	ov := apiv1.PlanOverride{Name: "web-special", HostUUID: hostUUID, CPUNum: 8, MemorySize: 16 << 30, Strategy: zstack.StrategyInstantStart,
		BootCheck: &job.BootCheck{Mode: job.BootConsole, Pattern: "login:", Timeout: time.Minute}}
	body, problem = request(spec, g, ov, "ignored", mapping)
	if problem != "" {
		t.Fatal(problem)
	}
	p = body.Params
	if p.Name != "web-special" || p.HostUUID != hostUUID || p.ZoneUUID != "" || p.InstanceOfferingUUID != "" ||
		p.CPUNum == nil || *p.CPUNum != 8 || *p.MemorySize != 16<<30 || p.Strategy != zstack.StrategyInstantStart {
		t.Errorf("override not applied: %+v", p)
	}
	if last := body.SystemTags[len(body.SystemTags)-1]; last != "bootCheck::console:login:::60" {
		t.Errorf("boot check tag %q, want the override's", last)
	}

	// keepSourceSize takes the source VM's size; an override's offering wins over it.
	keep := &apiv1.PlanSpec{Name: "dr", Defaults: apiv1.PlanDefaults{KeepSourceSize: true}}
	body, _ = request(keep, g, apiv1.PlanOverride{}, "n", mapping)
	if body.Params.CPUNum == nil || *body.Params.CPUNum != 2 || *body.Params.MemorySize != 2<<30 {
		t.Errorf("keepSourceSize: %+v", body.Params)
	}
	body, _ = request(keep, g, apiv1.PlanOverride{InstanceOfferingUUID: offering}, "n", mapping)
	if body.Params.CPUNum != nil || body.Params.InstanceOfferingUUID != offering {
		t.Errorf("an override's offering with keepSourceSize: %+v", body.Params)
	}

	// What the mapping cannot do is a problem of the item, in words.
	problems := []struct {
		name  string
		g     func() store.IndexedGroup
		spec  *apiv1.PlanSpec
		mapng map[string]apiv1.NetworkMap
		want  string
	}{
		{"unmapped NIC", func() store.IndexedGroup { return g }, spec, map[string]apiv1.NetworkMap{sourceL3: mapping[sourceL3]}, "NIC 1 is on source l3 network " + otherL3 + ", which networkMapping does not map"},
		{"kept IP missing", func() store.IndexedGroup { x := group(8, "db", day); x.VM.Nics[0].IP = ""; return x }, spec, mapping, "keeps the IP of source l3 network " + sourceL3 + ", but NIC 0 has none"},
		{"kept MAC missing", func() store.IndexedGroup { x := group(8, "db", day); x.VM.Nics[0].Mac = ""; return x }, spec, mapping, "keeps the MAC"},
		{"no source size", func() store.IndexedGroup { x := group(8, "db", day); x.VM.CPUNum = 0; return x }, keep, mapping, "keepSourceSize, but group.json gives no cpuNum"},
	}
	for _, c := range problems {
		if _, problem := request(c.spec, c.g(), apiv1.PlanOverride{}, "n", c.mapng); !strings.Contains(problem, c.want) {
			t.Errorf("%s: problem %q, want %q", c.name, problem, c.want)
		}
	}
}

// Build gives one item per group, in tier order of the rules, named by the template, with
// the bytes to restore; the problems of every item are reported together.
func TestBuildItems(t *testing.T) {
	groups := []store.IndexedGroup{group(1, "web01", day), group(2, "db01", day), group(3, "web02", day)}
	spec := baseSpec(groups...)
	spec.Defaults.NameTemplate = "{{.SourceName | upper}}-dr-{{.Tier}}"
	spec.Tiers = []apiv1.TierRule{{Tier: 1, SourceVMName: "db*"}}
	spec.Overrides = map[string]apiv1.PlanOverride{groups[2].GroupUUID: {Name: "web-two"}}
	items, ec := build(t, spec, Input{Groups: groups, Account: tenant})
	if ec != nil {
		t.Fatal(ec)
	}
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%d:%d:%s", it.Index, it.Tier, it.Name))
		if it.BytesTotal != 10<<30 || it.DataTotal != 1<<30 || it.Request == nil || it.Request.GroupUUID != it.GroupUUID {
			t.Errorf("item %d: bytes %d/%d, request %+v", it.Index, it.BytesTotal, it.DataTotal, it.Request)
		}
	}
	if want := []string{"0:2:WEB01-dr-2", "1:1:DB01-dr-1", "2:2:web-two"}; !slices.Equal(got, want) {
		t.Fatalf("items %v, want %v", got, want)
	}

	// Kept addresses may not collide with each other nor with what the site uses; each
	// problem names its item, and all are reported at once.
	a, b := group(1, "web01", day), group(2, "web02", day)
	b.VM.Nics[0].IP, b.VM.Nics[0].Mac = a.VM.Nics[0].IP, a.VM.Nics[0].Mac
	c := group(3, "web03", day)
	spec = baseSpec(a, b, c)
	spec.NetworkMapping[0].IP, spec.NetworkMapping[0].Mac = "keep", "keep"
	ip, _ := catalog.IPToLong(c.VM.Nics[0].IP)
	_, ec = build(t, spec, Input{Groups: []store.IndexedGroup{a, b, c}, Account: tenant,
		UsedMacs: map[string]string{c.VM.Nics[0].Mac: "some vm"},
		UsedIPs: func(l3 string) (map[string]string, error) {
			if l3 != targetL3 {
				return nil, fmt.Errorf("asked for l3 %s", l3)
			}
			return map[string]string{fmt.Sprint(ip): "some nic"}, nil
		}})
	if ec == nil {
		t.Fatal("colliding kept addresses accepted")
	}
	for _, want := range []string{"the plan has 4 problem(s)", "item 1 (group " + b.GroupUUID + `, vm "web02"): keeps IP 10.0.1.11`,
		"keeps MAC fa:16:3e:00:00:01, as item 0", "IP 10.0.1.13 on l3 network[uuid:" + targetL3 + "] is already in use",
		"MAC fa:16:3e:00:00:03 is already in use on the recovery site"} {
		if !strings.Contains(ec.Details, want) {
			t.Errorf("details %q lack %q", ec.Details, want)
		}
	}

	// A request the single API would refuse is refused here, with the catalog's reason.
	spec = baseSpec(a)
	spec.Defaults = apiv1.PlanDefaults{InstanceOfferingUUID: strings.Repeat("e", 32)}
	if _, ec = build(t, spec, Input{Groups: []store.IndexedGroup{a}, Account: tenant}); ec == nil || !strings.Contains(ec.Details, "item 0 (group "+a.GroupUUID) ||
		!strings.Contains(ec.Details, strings.Repeat("e", 32)) {
		t.Errorf("an unknown offering: %v", ec)
	}
}

// TestInstantItems: defaults.instant makes every item an instant restore, an override turns
// it off for one group.
func TestInstantItems(t *testing.T) {
	a, b := group(1, "db01", day), group(2, "web01", day)
	spec := baseSpec(a, b)
	spec.Defaults.Instant = true
	off := false
	spec.Overrides = map[string]apiv1.PlanOverride{b.GroupUUID: {Instant: &off}}
	items, ec := build(t, spec, Input{Groups: []store.IndexedGroup{a, b}, Account: tenant})
	if ec != nil {
		t.Fatal(ec)
	}
	got := map[string]bool{}
	for _, it := range items {
		got[it.GroupUUID] = it.Request.Instant
	}
	if !got[a.GroupUUID] || got[b.GroupUUID] {
		t.Fatalf("instant by group: %v", got)
	}
}
