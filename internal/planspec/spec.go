// Package planspec turns a restore plan as the operator writes it (apiv1.PlanSpec) into the
// items it will run: it checks the spec, selects the groups from the backup index, puts each
// in its tier, names it by the name template, maps its networks, applies the defaults and the
// group's override, and builds and validates each item's job request by the rules of a
// single restore. It is pure: it reads only what it is given (the catalog, the indexed
// groups, the addresses in use) and writes nothing; internal/plan stores and runs the items.
package planspec

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/pipeline"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/webhook"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Limits of a plan.
const (
	MaxItems           = 50000
	DefaultConcurrency = 20
	MaxConcurrency     = 2000
	maxProblems        = 25
)

// nameData is what a name template sees.
type nameData struct {
	SourceName, SourceUUID, GroupName, GroupUUID string
	Tier, Index                                  int
}

// problems collects item-level refusals.
type problems struct {
	list  []string
	count int
}

func (p *problems) addf(format string, args ...any) {
	p.count++
	if len(p.list) < maxProblems {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

func (p *problems) err() *zstack.ErrorCode {
	if p.count == 0 {
		return nil
	}
	more := ""
	if p.count > len(p.list) {
		more = fmt.Sprintf("; and %d more", p.count-len(p.list))
	}
	return zstack.InvalidArgument("the plan has %d problem(s): %s%s", p.count, strings.Join(p.list, "; "), more)
}

// Input is what Build needs besides the spec.
type Input struct {
	Catalog *catalog.Index
	Groups  []store.IndexedGroup
	Account string
	Admin   bool
	// UsedMacs and UsedIPs (per L3, ipInLong → owner) detect conflicts of kept addresses.
	UsedMacs map[string]string
	UsedIPs  func(l3 string) (map[string]string, error)
	// WebHooks checks the plan's web hook URL (nil: only public addresses).
	WebHooks *webhook.Policy
}

// Build validates a spec and turns it into items, each with the job request it will run.
// Every problem found is reported at once, in one SYS.1007 error (*zstack.ErrorCode); it
// stops with ctx's error when ctx ends (the client went away).
func Build(ctx context.Context, spec *apiv1.PlanSpec, in Input) ([]store.PlanItem, error) {
	var p problems
	if err := checkSpec(spec, in.Catalog, in.WebHooks); err != nil {
		return nil, err
	}
	tmplText := spec.Defaults.NameTemplate
	if tmplText == "" {
		tmplText = "{{.SourceName}}"
	}
	tmpl, ec := parseNameTemplate(tmplText)
	if ec != nil {
		return nil, ec
	}
	groups, ec := selectGroups(spec, in)
	if ec != nil {
		return nil, ec
	}
	mapping := map[string]apiv1.NetworkMap{}
	for _, m := range spec.NetworkMapping {
		mapping[m.SourceL3NetworkUUID] = m
	}

	items := make([]store.PlanItem, 0, len(groups))
	keptIPs := map[string]string{} // l3/ip → item
	keptMacs := map[string]string{}
	usedIPs := map[string]map[string]string{}
	for i, g := range groups {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		ov := spec.Overrides[g.GroupUUID]
		tier := tierOf(spec, g, ov)
		name, err := tmpl.execute(nameData{SourceName: g.VM.Name, SourceUUID: g.VM.UUID, GroupName: g.Name,
			GroupUUID: g.GroupUUID, Tier: tier, Index: i})
		if err != nil {
			p.addf("item %d (group %s): the name template fails: %v", i, g.GroupUUID, err)
			continue
		}
		where := fmt.Sprintf("item %d (group %s, vm %q)", i, g.GroupUUID, g.VM.Name)
		body, problem := request(spec, g, ov, name, mapping)
		if problem != "" {
			p.addf("%s: %s", where, problem)
			continue
		}
		req, ec := job.FromZStack(g.GroupUUID, body)
		if ec != nil {
			p.addf("%s: %s", where, ec.Details)
			continue
		}
		if err := pipeline.CheckRequest(in.Catalog, req); err != nil {
			if e, ok := zstack.AsErrorCode(err); ok {
				p.addf("%s: %s", where, e.Root().Details)
			} else {
				p.addf("%s: %v", where, err)
			}
			continue
		}
		for _, n := range req.NICs {
			if n.StaticIP != "" {
				k := n.L3NetworkUUID + "/" + n.StaticIP
				if other, dup := keptIPs[k]; dup {
					p.addf("%s: keeps IP %s on l3 network[uuid:%s], as %s does", where, n.StaticIP, n.L3NetworkUUID, other)
				}
				keptIPs[k] = where
				if in.UsedIPs != nil {
					used, ok := usedIPs[n.L3NetworkUUID]
					if !ok {
						used, _ = in.UsedIPs(n.L3NetworkUUID)
						usedIPs[n.L3NetworkUUID] = used
					}
					ip, _ := catalog.IPToLong(n.StaticIP)
					if _, taken := used[fmt.Sprint(ip)]; taken {
						p.addf("%s: IP %s on l3 network[uuid:%s] is already in use on the recovery site", where, n.StaticIP, n.L3NetworkUUID)
					}
				}
			}
			if n.Mac != "" {
				if other, dup := keptMacs[n.Mac]; dup {
					p.addf("%s: keeps MAC %s, as %s does", where, n.Mac, other)
				}
				keptMacs[n.Mac] = where
				if _, taken := in.UsedMacs[n.Mac]; taken {
					p.addf("%s: MAC %s is already in use on the recovery site", where, n.Mac)
				}
			}
		}
		var size, data int64
		for _, v := range g.Volumes {
			size += v.Size
			if v.ActualSize > 0 {
				data += v.ActualSize
			} else {
				data += v.Size
			}
		}
		items = append(items, store.PlanItem{Index: i, Tier: tier, GroupUUID: g.GroupUUID, Name: req.Name, BytesTotal: size, DataTotal: data, Request: req})
	}
	if ec := p.err(); ec != nil {
		return nil, ec
	}
	return items, nil
}

func checkSpec(spec *apiv1.PlanSpec, ix *catalog.Index, hooks *webhook.Policy) *zstack.ErrorCode {
	switch {
	case strings.TrimSpace(spec.Name) == "" || len(spec.Name) > 255:
		return zstack.InvalidArgument("name is required (at most 255 characters)")
	case len(spec.ClientToken) > 128:
		return zstack.InvalidArgument("clientToken is longer than 128 characters")
	case len(spec.Groups) == 0 && spec.Selector == nil:
		return zstack.InvalidArgument("the plan names no group: give groups (a list of group uuids) or a selector")
	case len(spec.Groups) > 0 && spec.Selector != nil:
		return zstack.InvalidArgument("give either groups or a selector, not both")
	case len(spec.Groups) > MaxItems:
		return zstack.InvalidArgument("the plan lists %d groups, more than %d", len(spec.Groups), MaxItems)
	case spec.Concurrency < 0 || spec.Concurrency > MaxConcurrency:
		return zstack.InvalidArgument("concurrency %d must be between 1 and %d", spec.Concurrency, MaxConcurrency)
	case spec.Defaults.KeepSourceSize && spec.Defaults.InstanceOfferingUUID != "":
		return zstack.InvalidArgument("defaults: give instanceOfferingUuid or keepSourceSize, not both")
	case spec.NextTierAfter != "" && spec.NextTierAfter != apiv1.NextTierAfterRunning && spec.NextTierAfter != apiv1.NextTierAfterHydrated:
		return zstack.InvalidArgument("nextTierAfter %q must be %s (an instant item lets the next tier start once its VM runs) or %s (once its data is in)",
			spec.NextTierAfter, apiv1.NextTierAfterRunning, apiv1.NextTierAfterHydrated)
	case spec.Mode != "" && spec.Mode != apiv1.ModeRecovery && spec.Mode != apiv1.ModeDrill:
		return zstack.InvalidArgument("mode %q must be recovery or drill", spec.Mode)
	}
	if ec := checkTestNetworks(spec, ix); ec != nil {
		return ec
	}
	if spec.WebHook != "" {
		if hooks == nil {
			hooks = webhook.NewPolicy(nil)
		}
		if err := hooks.CheckURL(spec.WebHook); err != nil {
			return zstack.InvalidArgument("webHook %s: %v", webhook.Redact(spec.WebHook), err)
		}
	}
	seen := map[string]bool{}
	for _, g := range spec.Groups {
		if !zstack.IsUUID(g) {
			return zstack.InvalidArgument("groups: %q is not a valid uuid", g)
		}
		if seen[g] {
			return zstack.InvalidArgument("groups lists group %s twice", g)
		}
		seen[g] = true
	}
	for g := range spec.Overrides {
		if !zstack.IsUUID(g) {
			return zstack.InvalidArgument("overrides: key %q is not a group uuid", g)
		}
	}
	if s := spec.Selector; s != nil && s.SourceVMName != "" {
		if _, err := path.Match(s.SourceVMName, ""); err != nil {
			return zstack.InvalidArgument("selector.sourceVmName %q is not a valid pattern", s.SourceVMName)
		}
	}
	for i, t := range spec.Tiers {
		if t.Tier < 1 || t.Tier > 1000 {
			return zstack.InvalidArgument("tiers[%d].tier %d must be between 1 and 1000", i, t.Tier)
		}
		if _, err := path.Match(t.SourceVMName, ""); err != nil || t.SourceVMName == "" {
			return zstack.InvalidArgument("tiers[%d].sourceVmName %q is not a valid pattern", i, t.SourceVMName)
		}
	}
	sources := map[string]bool{}
	for i, m := range spec.NetworkMapping {
		where := fmt.Sprintf("networkMapping[%d]", i)
		switch {
		case !zstack.IsUUID(m.SourceL3NetworkUUID):
			return zstack.InvalidArgument("%s.sourceL3NetworkUuid %q is not a valid uuid", where, m.SourceL3NetworkUUID)
		case sources[m.SourceL3NetworkUUID]:
			return zstack.InvalidArgument("%s maps source l3 network %s a second time", where, m.SourceL3NetworkUUID)
		case ix.L3Networks[m.TargetL3NetworkUUID] == nil:
			return zstack.InvalidArgument("%s.targetL3NetworkUuid %q is not an l3 network of the recovery site", where, m.TargetL3NetworkUUID)
		case m.IP != "" && m.IP != "keep" && m.IP != "allocate":
			return zstack.InvalidArgument("%s.ip %q must be keep or allocate", where, m.IP)
		case m.Mac != "" && m.Mac != "keep" && m.Mac != "regenerate":
			return zstack.InvalidArgument("%s.mac %q must be keep or regenerate", where, m.Mac)
		}
		sources[m.SourceL3NetworkUUID] = true
	}
	return nil
}

// checkTestNetworks checks that every test network named is an isolated one of the site,
// and that a drill has a test network for every mapping.
func checkTestNetworks(spec *apiv1.PlanSpec, ix *catalog.Index) *zstack.ErrorCode {
	if spec.TestL3NetworkUUID != "" {
		if ec := checkTestNetwork("testL3NetworkUuid", spec.TestL3NetworkUUID, ix); ec != nil {
			return ec
		}
	}
	for i, m := range spec.NetworkMapping {
		where := fmt.Sprintf("networkMapping[%d].testL3NetworkUuid", i)
		if m.TestL3NetworkUUID != "" {
			if ec := checkTestNetwork(where, m.TestL3NetworkUUID, ix); ec != nil {
				return ec
			}
			continue
		}
		if spec.IsDrill() && spec.TestL3NetworkUUID == "" {
			return zstack.InvalidArgument("a drill never takes production addresses, but %s is not set and the plan has no default testL3NetworkUuid: "+
				"source l3 network %s would be restored onto l3 network %s; give the mapping a testL3NetworkUuid, or the plan one for all",
				where, m.SourceL3NetworkUUID, describeL3(ix, m.TargetL3NetworkUUID))
		}
	}
	return nil
}

// checkTestNetwork refuses a test network that is not an isolated L3 network of the site.
func checkTestNetwork(where, uuid string, ix *catalog.Index) *zstack.ErrorCode {
	l3 := ix.L3Networks[uuid]
	switch {
	case l3 == nil:
		return zstack.InvalidArgument("%s %q is not an l3 network of the recovery site", where, uuid)
	case !l3.Isolated:
		return zstack.InvalidArgument("%s is l3 network %s, which is not an isolated test network: a drill on it would take production addresses; "+
			"name a network the site file marks isolated: true", where, describeL3(ix, uuid))
	}
	return nil
}

// describeL3 names an L3 network by name and uuid.
func describeL3(ix *catalog.Index, uuid string) string {
	if l3 := ix.L3Networks[uuid]; l3 != nil && l3.Name != "" {
		return fmt.Sprintf("%s (%s)", l3.Name, uuid)
	}
	return uuid
}

// TestNetworks lists a drill's test networks: one per mapping, then the plan's default
// (its source empty: every network no mapping names). A recovery plan has none.
func TestNetworks(spec *apiv1.PlanSpec, ix *catalog.Index) []apiv1.TestNetwork {
	if !spec.IsDrill() {
		return nil
	}
	name := func(uuid string) string {
		if l3 := ix.L3Networks[uuid]; l3 != nil {
			return l3.Name
		}
		return ""
	}
	var out []apiv1.TestNetwork
	for _, m := range spec.NetworkMapping {
		t := m.TestL3NetworkUUID
		if t == "" {
			t = spec.TestL3NetworkUUID
		}
		out = append(out, apiv1.TestNetwork{SourceL3NetworkUUID: m.SourceL3NetworkUUID, ProductionL3NetworkUUID: m.TargetL3NetworkUUID,
			L3NetworkUUID: t, Name: name(t)})
	}
	if spec.TestL3NetworkUUID != "" {
		out = append(out, apiv1.TestNetwork{L3NetworkUUID: spec.TestL3NetworkUUID, Name: name(spec.TestL3NetworkUUID)})
	}
	return out
}

// nicTarget is where a NIC on source network src goes: the mapping's target, or in a drill
// its test network (the plan's default when the mapping names none, or no mapping names the
// source). It returns a problem text, or "".
func nicTarget(spec *apiv1.PlanSpec, mapping map[string]apiv1.NetworkMap, src string, device int) (apiv1.NetworkMap, string) {
	m, ok := mapping[src]
	if !spec.IsDrill() {
		if !ok {
			return m, fmt.Sprintf("its NIC %d is on source l3 network %s, which networkMapping does not map", device, src)
		}
		return m, ""
	}
	switch {
	case ok && m.TestL3NetworkUUID != "":
		m.TargetL3NetworkUUID = m.TestL3NetworkUUID
	case spec.TestL3NetworkUUID != "":
		m.SourceL3NetworkUUID, m.TargetL3NetworkUUID = src, spec.TestL3NetworkUUID
	default:
		return m, fmt.Sprintf("its NIC %d is on source l3 network %s, for which the drill has no test network (no mapping's testL3NetworkUuid, no default testL3NetworkUuid)", device, src)
	}
	return m, ""
}

// selectGroups resolves the explicit list or the selector against the backup index, keeping
// only groups the account may restore.
func selectGroups(spec *apiv1.PlanSpec, in Input) ([]store.IndexedGroup, *zstack.ErrorCode) {
	byUUID := make(map[string]*store.IndexedGroup, len(in.Groups))
	for i := range in.Groups {
		byUUID[in.Groups[i].GroupUUID] = &in.Groups[i]
	}
	visible := func(g *store.IndexedGroup) bool {
		return in.Admin || g.AccountUUID == in.Account
	}
	var out []store.IndexedGroup
	if len(spec.Groups) > 0 {
		var missing []string
		for _, u := range spec.Groups {
			g := byUUID[u]
			if g == nil || !visible(g) {
				missing = append(missing, u)
				continue
			}
			out = append(out, *g)
		}
		if len(missing) > 0 {
			if len(missing) > maxProblems {
				missing = append(missing[:maxProblems], fmt.Sprintf("and %d more", len(missing)-maxProblems))
			}
			return nil, zstack.Errorf(zstack.CodeNotFound, "No volume backups found with group uuid: %s (groups are indexed from the backup storages every 30 s)", strings.Join(missing, ", "))
		}
		return out, nil
	}
	s := spec.Selector
	newest := map[string]int{}
	for i := range in.Groups {
		g := &in.Groups[i]
		if !visible(g) {
			continue
		}
		if s.BackupStorageUUID != "" && !contains(g.BackupStorageUUIDs, s.BackupStorageUUID) {
			continue
		}
		if s.SourceVMName != "" {
			if ok, _ := path.Match(s.SourceVMName, g.VM.Name); !ok {
				continue
			}
		}
		if s.NewestPerSourceVM {
			key := g.VM.UUID
			if key == "" {
				key = "name:" + g.VM.Name
			}
			if j, seen := newest[key]; seen {
				if g.CreateDate.After(out[j].CreateDate) {
					out[j] = *g
				}
				continue
			}
			newest[key] = len(out)
		}
		out = append(out, *g)
	}
	if len(out) == 0 {
		return nil, zstack.Errorf(zstack.CodeNotFound, "the selector matches no backup group")
	}
	if len(out) > MaxItems {
		return nil, zstack.InvalidArgument("the selector matches %d groups, more than %d", len(out), MaxItems)
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].VM.Name != out[b].VM.Name {
			return out[a].VM.Name < out[b].VM.Name
		}
		return out[a].CreateDate.Before(out[b].CreateDate)
	})
	return out, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// tierOf is the override's tier, else the first matching rule's, else one past the highest
// rule (so that "databases in tier 1" puts everything else after them), else 1.
func tierOf(spec *apiv1.PlanSpec, g store.IndexedGroup, ov apiv1.PlanOverride) int {
	if ov.Tier > 0 {
		return ov.Tier
	}
	top := 0
	for _, r := range spec.Tiers {
		if ok, _ := path.Match(r.SourceVMName, g.VM.Name); ok {
			return r.Tier
		}
		top = max(top, r.Tier)
	}
	return top + 1
}

// request builds the ZStack request of one item. It returns a problem text, or "".
func request(spec *apiv1.PlanSpec, g store.IndexedGroup, ov apiv1.PlanOverride, name string, mapping map[string]apiv1.NetworkMap) (*zstack.CreateVmFromVmBackupRequest, string) {
	d := spec.Defaults
	p := zstack.CreateVmFromVmBackupParams{
		Name: name, Strategy: d.Strategy, ZoneUUID: d.ZoneUUID, ClusterUUID: d.ClusterUUID,
		InstanceOfferingUUID:            d.InstanceOfferingUUID,
		PrimaryStorageUUIDForRootVolume: d.PrimaryStorageUUIDForRootVolume,
		PrimaryStorageUUIDForDataVolume: d.PrimaryStorageUUIDForDataVolume,
		Description:                     fmt.Sprintf("restored from group %s (%s) by plan %q", g.GroupUUID, g.Name, spec.Name),
	}
	if spec.Selector != nil {
		p.BackupStorageUUID = spec.Selector.BackupStorageUUID
	}
	if ov.Name != "" {
		p.Name = ov.Name
	}
	if ov.Strategy != "" {
		p.Strategy = ov.Strategy
	}
	if ov.ZoneUUID != "" || ov.ClusterUUID != "" || ov.HostUUID != "" {
		p.ZoneUUID, p.ClusterUUID, p.HostUUID = ov.ZoneUUID, ov.ClusterUUID, ov.HostUUID
	}
	keep := d.KeepSourceSize
	if ov.InstanceOfferingUUID != "" {
		p.InstanceOfferingUUID, keep = ov.InstanceOfferingUUID, false
	}
	if ov.CPUNum > 0 || ov.MemorySize > 0 {
		cpu, mem := ov.CPUNum, ov.MemorySize
		p.CPUNum, p.MemorySize, p.InstanceOfferingUUID, keep = &cpu, &mem, "", false
	}
	if keep {
		if g.VM.CPUNum <= 0 || g.VM.MemorySize <= 0 {
			return nil, "keepSourceSize, but group.json gives no cpuNum and memorySize of the source VM"
		}
		cpu, mem := g.VM.CPUNum, g.VM.MemorySize
		p.CPUNum, p.MemorySize, p.InstanceOfferingUUID = &cpu, &mem, ""
	}

	body := &zstack.CreateVmFromVmBackupRequest{}
	for _, n := range sortedNics(g) {
		m, problem := nicTarget(spec, mapping, n.L3NetworkUUID, n.DeviceID)
		if problem != "" {
			return nil, problem
		}
		p.L3NetworkUUIDs = append(p.L3NetworkUUIDs, m.TargetL3NetworkUUID)
		if m.IP == "keep" {
			if n.IP == "" {
				return nil, fmt.Sprintf("networkMapping keeps the IP of source l3 network %s, but NIC %d has none in group.json", n.L3NetworkUUID, n.DeviceID)
			}
			body.SystemTags = append(body.SystemTags, "staticIp::"+m.TargetL3NetworkUUID+"::"+n.IP)
		}
		if m.Mac == "keep" {
			if n.Mac == "" {
				return nil, fmt.Sprintf("networkMapping keeps the MAC of source l3 network %s, but NIC %d has none in group.json", n.L3NetworkUUID, n.DeviceID)
			}
			body.SystemTags = append(body.SystemTags, "customMac::"+m.TargetL3NetworkUUID+"::"+n.Mac)
		}
	}
	if len(p.L3NetworkUUIDs) > 0 {
		p.DefaultL3NetworkUUID = p.L3NetworkUUIDs[0]
	}
	check := d.BootCheck
	if ov.BootCheck != nil {
		check = ov.BootCheck
	}
	if check != nil {
		body.SystemTags = append(body.SystemTags, fmt.Sprintf("%s%s::%d", job.BootCheckTagPrefix, check.Spec(), int(check.Timeout/time.Second)))
	}
	instant := d.Instant
	if ov.Instant != nil {
		instant = *ov.Instant
	}
	if instant {
		body.SystemTags = append(body.SystemTags, job.InstantTagPrefix+"true")
	}
	body.Params = p
	return body, ""
}

// sortedNics returns the source VM's NICs in deviceId order.
func sortedNics(g store.IndexedGroup) []backup.SourceNic {
	out := append([]backup.SourceNic(nil), g.VM.Nics...)
	sort.SliceStable(out, func(a, b int) bool { return out[a].DeviceID < out[b].DeviceID })
	return out
}
