package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// notFound is ZStack's argerr for a uuid parameter naming nothing.
func notFound(field, uuid, kind string) *zstack.ErrorCode {
	return zstack.InvalidArgument("invalid field[%s], resource[uuids:[%s], type:%s] not found", field, uuid, kind)
}

// resolve checks the request against the catalog and the backup group (the validation rules
// that need them) and fixes the VM to build: uuids, sizes, volumes, NICs.
func (p *Pipeline) resolve(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	req := rec.Request
	g, bs, err := findGroup(p.Groups, ix, req)
	if err != nil {
		return err
	}
	if err := p.checkOwnership(ctx, rec, g); err != nil {
		return err
	}
	vmUUID := req.ResourceUUID
	if vmUUID == "" {
		vmUUID = rec.GeneratedVMUUID
	}
	r, err := Resolve(ix, req, g, bs.UUID, vmUUID)
	if err != nil {
		return err
	}
	if err := p.claimVMUUID(ctx, rec, r.VMUUID); err != nil {
		return err
	}
	if r.InternalID, err = p.Store.NextVMInternalID(ctx); err != nil {
		return err
	}
	rec.Checkpoints.Resolved = r
	return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageResolve, store.CheckpointResolved, r)
}

// claimVMUUID makes the VM's uuid this job's before anything is built under it. The API
// claimed a requested resourceUuid for this job already (claiming again is a no-op); one the
// job generated is claimed now, so that no later request can name it.
func (p *Pipeline) claimVMUUID(ctx context.Context, rec *job.Record, vmUUID string) error {
	b := store.ResourceBinding{JobUUID: rec.UUID, AccountUUID: rec.AccountUUID}
	if rec.Request.ResourceUUID == "" {
		return p.Store.ClaimVMUUID(ctx, vmUUID, b)
	}
	b.GroupUUID = rec.Request.GroupUUID
	prev, err := p.Store.ClaimResource(ctx, vmUUID, b)
	if err != nil {
		return err
	}
	if prev != nil { // another job of the same request holds it: that job builds the VM
		return store.ResourceTaken(vmUUID)
	}
	return nil
}

// CheckRequest applies the validation rules that need the catalog but not the backup group:
// the offering, the scope (zone, cluster, host, L3 networks and static addresses) and the
// named storages. Plans check every item with it before accepting them.
func CheckRequest(ix *catalog.Index, req *job.Request) error {
	var r job.Resolved
	if _, err := sizes(ix, req, &r); err != nil {
		return err
	}
	if err := checkScope(ix, req, &r); err != nil {
		return err
	}
	return checkStorages(ix, req)
}

// sizes fills CPU, memory and allocator strategies: the offering wins over cpuNum/memorySize.
func sizes(ix *catalog.Index, req *job.Request, r *job.Resolved) (*job.Resolved, error) {
	r.CPUNum, r.MemorySize, r.ReservedMemorySize = req.CPUNum, req.MemorySize, req.ReservedMemorySize
	r.AllocatorStrategy, r.PSStrategy = catalog.HostDefault, catalog.PSDefault
	if u := req.InstanceOfferingUUID; u != "" {
		o := ix.InstanceOfferings[u]
		if o == nil {
			return nil, notFound("instanceOfferingUuid", u, "InstanceOfferingVO")
		}
		if o.State != catalog.StateEnabled {
			return nil, zstack.InvalidArgument("instance offering[uuid:%s] is %s", u, o.State)
		}
		r.InstanceOfferingUUID = u
		r.CPUNum, r.MemorySize, r.CPUSpeed = o.CPUNum, int64(o.MemorySize), o.CPUSpeed
		if req.ReservedMemorySize == 0 {
			r.ReservedMemorySize = int64(o.ReservedMemorySize)
		}
		r.AllocatorStrategy, r.PSStrategy = o.AllocatorStrategy, o.PrimaryStorageAllocatorStrategy
	}
	if r.ReservedMemorySize > r.MemorySize {
		return nil, zstack.InvalidArgument("reservedMemorySize[%d] cannot be larger than the VM's memorySize[%d]", r.ReservedMemorySize, r.MemorySize)
	}
	return r, nil
}

// Resolve fixes the VM a request builds from a group found on backup storage bs: sizes,
// scope, identities (the VM gets vmUUID, or a new uuid when it is empty), the volumes (root
// first, then data volumes in their original deviceId order) and the NICs. It has no side
// effect; InternalID is left for the caller to assign.
func Resolve(ix *catalog.Index, req *job.Request, g *backup.Group, bs, vmUUID string) (*job.Resolved, error) {
	r := &job.Resolved{
		Name: req.Name, Description: req.Description, Type: req.Type,
		DefaultL3NetworkUUID: req.DefaultL3NetworkUUID,
		RootPrimaryStorage:   req.RootPrimaryStorage, DataPrimaryStorage: req.DataPrimaryStorage,
		CreateDate: time.Now().Truncate(time.Second), BackupStorageUUID: bs,
	}
	if _, err := sizes(ix, req, r); err != nil {
		return nil, err
	}
	if err := checkScope(ix, req, r); err != nil {
		return nil, err
	}
	if err := checkStorages(ix, req); err != nil {
		return nil, err
	}
	r.Platform, r.Architecture, r.GuestOsType = g.VM.Platform, g.VM.Architecture, g.VM.GuestOsType
	if r.Platform == "" {
		r.Platform = "Linux"
	}
	if r.Architecture == "" {
		r.Architecture = "x86_64"
	}
	r.ImageUUID, r.SourceHostUUID = g.VM.ImageUUID, g.VM.HostUUID
	r.VMUUID = vmUUID
	if r.VMUUID == "" {
		r.VMUUID = zstack.NewUUID()
	}
	root := g.Root()
	r.Volumes = append(r.Volumes, plannedVolume(root, 0, fmt.Sprintf("Root-Volume-For-VM-%s", r.VMUUID)))
	for i, v := range g.DataVolumes() {
		name := v.Name
		if name == "" {
			name = fmt.Sprintf("DATA-for-%s-%d", req.Name, i+1)
		}
		r.Volumes = append(r.Volumes, plannedVolume(v, i+1, name))
	}
	for i, n := range req.NICs {
		r.NICs = append(r.NICs, job.PlannedNIC{NIC: n, UUID: zstack.NewUUID(), UsedIPUUID: zstack.NewUUID(), DeviceID: i})
	}
	return r, nil
}

func plannedVolume(v *backup.Volume, deviceID int, name string) job.PlannedVolume {
	d := v.Digest()
	return job.PlannedVolume{
		UUID: zstack.NewUUID(), BackupUUID: v.UUID, SourceVolumeUUID: v.VolumeUUID, Name: name,
		Type: v.Type, DeviceID: deviceID, Format: v.Format, Size: v.Size, BackupActualSize: v.ActualSize,
		File: v.File, ChecksumAlgo: d.Algorithm, Checksum: d.Value,
	}
}

// checkScope validates zone, cluster, host and L3 networks: they exist, are Enabled (hosts
// Connected) when named, and agree with one another. It fixes the VM's zone.
func checkScope(ix *catalog.Index, req *job.Request, r *job.Resolved) error {
	var zone string
	if u := req.ZoneUUID; u != "" {
		z := ix.Zones[u]
		if z == nil {
			return notFound("zoneUuid", u, "ZoneVO")
		}
		if z.State != catalog.StateEnabled {
			return zstack.InvalidArgument("zone[uuid:%s] is %s; it cannot receive VMs", u, z.State)
		}
		zone = u
	}
	if u := req.ClusterUUID; u != "" {
		c := ix.Clusters[u]
		if c == nil {
			return notFound("clusterUuid", u, "ClusterVO")
		}
		if c.State != catalog.StateEnabled {
			return zstack.InvalidArgument("cluster[uuid:%s] is %s; it cannot receive VMs", u, c.State)
		}
		if zone != "" && c.ZoneUUID != zone {
			return zstack.InvalidArgument("cluster[uuid:%s] is not in zone[uuid:%s]", u, zone)
		}
		zone = c.ZoneUUID
		r.ClusterUUID = u
	}
	if u := req.HostUUID; u != "" {
		h := ix.Hosts[u]
		if h == nil {
			return notFound("hostUuid", u, "HostVO")
		}
		if h.State != catalog.StateEnabled || h.Status != catalog.StatusConnected {
			return zstack.InvalidArgument("host[uuid:%s] is %s and %s; a VM can only be created on an Enabled and Connected host", u, h.State, h.Status)
		}
		if req.ClusterUUID != "" && h.ClusterUUID != req.ClusterUUID {
			return zstack.InvalidArgument("host[uuid:%s] is not in cluster[uuid:%s]", u, req.ClusterUUID)
		}
		hz := ix.ZoneOfHost(h)
		if zone != "" && hz != zone {
			return zstack.InvalidArgument("host[uuid:%s] is not in zone[uuid:%s]", u, zone)
		}
		zone = hz
		r.HostUUID, r.ClusterUUID = u, h.ClusterUUID
	}
	for i, u := range req.NICs {
		l3 := ix.L3Networks[u.L3NetworkUUID]
		if l3 == nil {
			return notFound(fmt.Sprintf("l3NetworkUuids[%d]", i), u.L3NetworkUUID, "L3NetworkVO")
		}
		if l3.State != catalog.StateEnabled {
			return zstack.InvalidArgument("l3 network[uuid:%s] is %s", l3.UUID, l3.State)
		}
		if zone == "" {
			zone = l3.ZoneUUID // without a zone, the zone of the first L3
		} else if l3.ZoneUUID != zone {
			return zstack.InvalidArgument("l3 network[uuid:%s] is in zone[uuid:%s], not in the VM's zone[uuid:%s]", l3.UUID, l3.ZoneUUID, zone)
		}
		if u.StaticIP != "" {
			ip, _ := catalog.IPToLong(u.StaticIP)
			inRange := false
			for _, rg := range ix.Ranges[l3.UUID] {
				inRange = inRange || rg.Contains(ip)
			}
			if !inRange {
				return zstack.InvalidArgument("IP[%s] is not in any IP range of l3 network[uuid:%s]", u.StaticIP, l3.UUID)
			}
		}
	}
	r.ZoneUUID = zone
	return nil
}

// checkStorages validates the requested primary storages.
func checkStorages(ix *catalog.Index, req *job.Request) error {
	for _, f := range []struct{ field, uuid string }{
		{"primaryStorageUuidForRootVolume", req.RootPrimaryStorage},
		{"primaryStorageUuidForDataVolume", req.DataPrimaryStorage},
	} {
		if f.uuid == "" {
			continue
		}
		ps := ix.PrimaryStorages[f.uuid]
		if ps == nil {
			return notFound(f.field, f.uuid, "PrimaryStorageVO")
		}
		if !catalog.StorageUsable(ps) {
			return zstack.InvalidArgument("primary storage[uuid:%s] is %s and %s; it cannot receive volumes", ps.UUID, ps.State, ps.Status)
		}
	}
	if a, b := req.RootPrimaryStorage, req.DataPrimaryStorage; a != "" && b != "" && a != b {
		shared := false
		for _, c := range ix.ClustersByStorage[a] {
			for _, c2 := range ix.ClustersByStorage[b] {
				shared = shared || c.UUID == c2.UUID
			}
		}
		if !shared {
			return zstack.InvalidArgument("cannot specify primary storage which attached different cluster.")
		}
	}
	return nil
}

// findGroup finds the group on an Enabled, Connected backup storage (the requested one, if
// any) that holds all of its files, read through groups (which may be nil). The group may be
// shared with other restores: it must not be modified.
func findGroup(groups *backup.GroupCache, ix *catalog.Index, req *job.Request) (*backup.Group, *catalog.BackupStorage, error) {
	var storages []*catalog.BackupStorage
	if u := req.BackupStorageUUID; u != "" {
		bs := ix.BackupStorages[u]
		if bs == nil {
			return nil, nil, notFound("backupStorageUuid", u, "BackupStorageVO")
		}
		if bs.State != catalog.StateEnabled || bs.Status != catalog.StatusConnected {
			return nil, nil, zstack.InvalidArgument("backup storage[uuid:%s] is %s and %s", u, bs.State, bs.Status)
		}
		storages = []*catalog.BackupStorage{bs}
	} else {
		for i := range ix.Site.BackupStorages {
			bs := &ix.Site.BackupStorages[i]
			if bs.State == catalog.StateEnabled && bs.Status == catalog.StatusConnected {
				storages = append(storages, bs)
			}
		}
	}
	var broken error
	var found *backup.Group
	missing := ""
	for _, bs := range storages {
		g, err := groups.Read(bs.URL, req.GroupUUID)
		if errors.Is(err, backup.ErrNoGroup) {
			continue
		}
		if err != nil {
			broken = err
			continue
		}
		found = g
		ok, miss := backup.HasFiles(bs.URL, g)
		if ok {
			return g, bs, nil
		}
		missing = miss
	}
	switch {
	case found != nil:
		return nil, nil, zstack.Errorf(zstack.CodeNotFound, "Volume backup[uuid:%s] not found on any backup storage", missing)
	case broken != nil:
		ec, _ := zstack.AsErrorCode(broken)
		return nil, nil, zstack.Operation(ec)
	}
	return nil, nil, zstack.Errorf(zstack.CodeNotFound, "No volume backups found with group uuid: %s", req.GroupUUID)
}

// checkOwnership lets an account restore only the groups it owns (accountUuid in
// group.json); a group without an owner belongs to admin. SystemAdmin accounts may restore
// any group.
func (p *Pipeline) checkOwnership(ctx context.Context, rec *job.Record, g *backup.Group) error {
	if g.AccountUUID != "" && g.AccountUUID == rec.AccountUUID {
		return nil
	}
	admin, err := p.Store.SystemAdmin(ctx, rec.AccountUUID)
	if err != nil {
		return err
	}
	if admin {
		return nil
	}
	return zstack.Errorf(zstack.CodePermission, "account[uuid:%s] has no permission to restore group[uuid:%s]", rec.AccountUUID, g.GroupUUID)
}
