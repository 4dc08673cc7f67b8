package plan

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/pipeline"
	"github.com/vmrestore/vmrestore/internal/placement"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// overlay is placement's view of capacity during a dry run: what Redis holds now, plus
// what the items simulated so far would take.
type overlay struct {
	st    *store.Store
	base  map[string]store.FieldUsage
	delta map[string]int64
}

func (o *overlay) Usage(ctx context.Context, fields []string) ([]store.FieldUsage, error) {
	var missing []string
	for _, f := range fields {
		if _, ok := o.base[f]; !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		u, err := o.st.Usage(ctx, missing)
		if err != nil {
			return nil, err
		}
		for i, f := range missing {
			o.base[f] = u[i]
		}
	}
	out := make([]store.FieldUsage, len(fields))
	for i, f := range fields {
		out[i] = o.base[f]
		out[i].Used += o.delta[f]
	}
	return out, nil
}

func (o *overlay) Reserve(ctx context.Context, _ string, cands []store.Candidate) (store.ReserveResult, error) {
	last := ""
	for i, c := range cands {
		fits := true
		for _, cl := range c.Claims {
			if cl.Counter {
				continue
			}
			u := o.base[cl.Field]
			if u.Limit < 0 || u.Used+o.delta[cl.Field]+cl.Amount > u.Limit {
				fits, last = false, cl.Field
				break
			}
		}
		if fits {
			for _, cl := range c.Claims {
				o.delta[cl.Field] += cl.Amount
			}
			return store.ReserveResult{Index: i}, nil
		}
	}
	return store.ReserveResult{Index: -1, FullField: last}, nil
}

// addresses simulates address allocation per L3: what Redis holds plus what the items so
// far would take, handed out first-available per range.
type addresses struct {
	st     *store.Store
	used   map[string]map[int64]bool
	cursor map[string]int64
}

func (a *addresses) usedOn(ctx context.Context, l3 string) (map[int64]bool, error) {
	if u, ok := a.used[l3]; ok {
		return u, nil
	}
	raw, err := a.st.UsedIPs(ctx, l3)
	if err != nil {
		return nil, err
	}
	u := make(map[int64]bool, len(raw))
	for k := range raw {
		if v, err := strconv.ParseInt(k, 10, 64); err == nil {
			u[v] = true
		}
	}
	a.used[l3] = u
	return u, nil
}

func (a *addresses) take(ctx context.Context, ranges []catalog.Range, l3 string, static int64) (int64, error) {
	used, err := a.usedOn(ctx, l3)
	if err != nil {
		return 0, err
	}
	if static != 0 {
		for _, r := range ranges {
			if r.Contains(static) && static != r.GatewayLong() && !used[static] {
				used[static] = true
				return static, nil
			}
		}
		return 0, fmt.Errorf("IP[%s] is not available on l3 network[uuid:%s]", catalog.LongToIP(static), l3)
	}
	for _, r := range ranges {
		key := l3 + "/" + r.UUID
		for ip := max(r.Start, a.cursor[key]); ip <= r.End; ip++ {
			if ip != r.GatewayLong() && !used[ip] {
				used[ip] = true
				a.cursor[key] = ip + 1
				return ip, nil
			}
		}
		a.cursor[key] = r.End + 1
	}
	return 0, fmt.Errorf("no ip is available in this l3Network[uuid:%s]", l3)
}

// DryRun simulates a plan's items, in tier order, against the capacity and addresses free
// right now.
func DryRun(ctx context.Context, ix *catalog.Index, st *store.Store, groups map[string]store.IndexedGroup, items []store.PlanItem) (*apiv1.DryRunReport, error) {
	rep := &apiv1.DryRunReport{ItemCount: len(items), Refusals: map[string]int{}, Items: make([]apiv1.DryRunItem, 0, len(items)), Note: apiv1.DryRunNote}
	if err := freeNow(ctx, ix, st, &rep.Free); err != nil {
		return nil, err
	}
	ov := &overlay{st: st, base: map[string]store.FieldUsage{}, delta: map[string]int64{}}
	addr := &addresses{st: st, used: map[string]map[int64]bool{}, cursor: map[string]int64{}}
	order := append([]store.PlanItem(nil), items...)
	sortByTier(order)
	for _, it := range order {
		if err := ctx.Err(); err != nil { // the client went away: stop
			return nil, err
		}
		out := apiv1.DryRunItem{Index: it.Index, Tier: it.Tier, GroupUUID: it.GroupUUID, Name: it.Name}
		refuse := func(code, details string) {
			out.ErrorCode, out.Error = code, details
			rep.Refused++
			rep.Refusals[code]++
		}
		g := groups[it.GroupUUID]
		bs := ""
		for _, b := range g.BackupStorageUUIDs {
			if it.Request.BackupStorageUUID == "" || b == it.Request.BackupStorageUUID {
				bs = b
				break
			}
		}
		r, err := pipeline.Resolve(ix, it.Request, &g.Group, bs, it.Request.ResourceUUID)
		if err != nil {
			ec, _ := zstack.AsErrorCode(err)
			refuse(ec.Root().Code, ec.Root().Details)
			rep.Items = append(rep.Items, out)
			continue
		}
		out.CPUNum, out.MemorySize = r.CPUNum, r.MemorySize
		rep.Needed.CPU += r.CPUNum
		rep.Needed.Memory += r.MemorySize
		for _, v := range r.Volumes {
			rep.Needed.Storage += v.Size
		}
		if bs == "" {
			refuse(zstack.CodeNotFound, fmt.Sprintf("Volume backup group[uuid:%s] not found on any backup storage", it.GroupUUID))
			rep.Items = append(rep.Items, out)
			continue
		}
		if it.Request.Strategy == zstack.StrategyJustCreate {
			out.Fits = true
			rep.Fits++
			rep.Items = append(rep.Items, out)
			continue
		}
		res, err := placement.Place(ctx, ix, ov, "dry-run", pipeline.PlacementRequest(it.Request, r))
		var ref *placement.Refusal
		switch {
		case errors.As(err, &ref):
			refuse(zstack.CodeHostAllocation, fmt.Sprintf("filter[%s]: %s", ref.Filter, ref.Details))
			rep.Items = append(rep.Items, out)
			continue
		case err != nil:
			return nil, err
		}
		out.HostUUID, out.ClusterUUID = res.HostUUID, res.ClusterUUID
		if h := ix.Hosts[res.HostUUID]; h != nil {
			out.HostName = h.Name
		}
		if c := ix.Clusters[res.ClusterUUID]; c != nil {
			out.ClusterName = c.Name
		}
		for _, v := range r.Volumes {
			dv := apiv1.DryRunVolume{VolumeBackupUUID: v.BackupUUID, Type: v.Type, Size: v.Size, PrimaryStorageUUID: res.VolumeStorage[v.UUID]}
			if ps := ix.PrimaryStorages[dv.PrimaryStorageUUID]; ps != nil {
				dv.PrimaryStorageName = ps.Name
			}
			out.Volumes = append(out.Volumes, dv)
		}
		nicErr := ""
		for _, n := range r.NICs {
			var static int64
			if n.StaticIP != "" {
				static, _ = catalog.IPToLong(n.StaticIP)
			}
			ip, err := addr.take(ctx, ix.Ranges[n.L3NetworkUUID], n.L3NetworkUUID, static)
			if err != nil {
				nicErr = err.Error()
				break
			}
			l3 := ix.L3Networks[n.L3NetworkUUID]
			out.NICs = append(out.NICs, apiv1.DryRunNIC{L3NetworkUUID: n.L3NetworkUUID, IP: catalog.LongToIP(ip), Static: static != 0,
				Random: static == 0 && l3 != nil && l3.IPAllocatorStrategy == catalog.IPRandom})
		}
		if nicErr != "" {
			refuse(zstack.CodeIPAllocation, nicErr)
		} else {
			out.Fits = true
			rep.Fits++
		}
		rep.Items = append(rep.Items, out)
	}
	sortByIndex(rep.Items)
	return rep, nil
}

// WarnNameCollisions warns of each item whose name is already a VM's (existing: name →
// uuids of the VMs the account sees) or another item's: ZStack allows it, but two VMs of one
// name are rarely what a recovery means, and the second is easily taken for the first.
func WarnNameCollisions(rep *apiv1.DryRunReport, existing map[string][]string) {
	byName := map[string][]int{}
	for _, it := range rep.Items {
		byName[it.Name] = append(byName[it.Name], it.Index)
	}
	for i := range rep.Items {
		it := &rep.Items[i]
		if vms := existing[it.Name]; len(vms) > 0 {
			it.Warnings = append(it.Warnings, fmt.Sprintf("a VM named %q already exists on the recovery site (uuid %s); this restore makes another: "+
				"give the item another name (defaults.nameTemplate or an override's name) unless two are meant", it.Name, strings.Join(vms, ", ")))
		}
		if others := byName[it.Name]; len(others) > 1 {
			var idx []string
			for _, o := range others {
				if o != it.Index {
					idx = append(idx, strconv.Itoa(o))
				}
			}
			it.Warnings = append(it.Warnings, fmt.Sprintf("item(s) %s of this plan are named %q too: a name template with .SourceUUID or .GroupName tells them apart",
				strings.Join(idx, ", "), it.Name))
		}
		if len(it.Warnings) > 0 {
			rep.Warnings++
		}
	}
}

// freeNow adds up the CPU, memory and primary storage free on usable hosts and storages.
func freeNow(ctx context.Context, ix *catalog.Index, st *store.Store, free *apiv1.Resources) error {
	var fields []string
	for _, h := range ix.Site.Hosts {
		if ix.HostUsable(&h) {
			fields = append(fields, store.FieldHostCPU(h.UUID), store.FieldHostMemory(h.UUID))
		}
	}
	seen := map[string]bool{}
	for _, ps := range ix.Site.PrimaryStorages {
		if ps.Type != catalog.PSLocalStorage {
			fields = append(fields, store.FieldStorageBytes(ps.UUID, ""))
			continue
		}
		for _, c := range ix.ClustersByStorage[ps.UUID] {
			for _, h := range ix.HostsByCluster[c.UUID] {
				if f := store.FieldStorageBytes(ps.UUID, h.UUID); !seen[f] {
					seen[f] = true
					fields = append(fields, f)
				}
			}
		}
	}
	u, err := st.Usage(ctx, fields)
	if err != nil {
		return err
	}
	for i, f := range fields {
		if u[i].Limit < 0 {
			continue
		}
		v := max(u[i].Limit-u[i].Used, 0)
		switch {
		case len(f) > 4 && f[len(f)-4:] == ":cpu":
			free.CPU += v
		case len(f) > 4 && f[len(f)-4:] == ":mem":
			free.Memory += v
		default:
			free.Storage += v
		}
	}
	return nil
}
