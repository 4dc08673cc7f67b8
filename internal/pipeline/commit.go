package pipeline

import (
	"context"
	"fmt"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// commit stores the VM inventory and ends the job with it.
func (p *Pipeline) commit(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	b, err := p.Store.PutVM(ctx, rec.AccountUUID, rec.UUID, Inventory(ix, rec))
	if err != nil {
		return err
	}
	// No checkpoint of its own: finishing the job is the commit's checkpoint. (One written
	// before FinishJob would make an attempt interrupted in between skip the finish.)
	if _, err = p.Store.FinishJob(ctx, rec.UUID, job.Succeeded, b, nil); err != nil {
		return err
	}
	return p.notify(ctx, rec)
}

// Inventory builds the VmInstanceInventory of a job whose stages have run.
func Inventory(ix *catalog.Index, rec *job.Record) *zstack.VmInstanceInventory {
	r, pl := rec.Checkpoints.Resolved, rec.Checkpoints.Placement
	created := zstack.Date{Time: r.CreateDate}
	state := hypervisor.StateFor(rec.Request.Strategy)
	if inst := rec.Checkpoints.Instance; inst != nil && inst.State != "" {
		state = inst.State // what the hypervisor reported
	}
	vm := &zstack.VmInstanceInventory{
		UUID: r.VMUUID, Name: r.Name, Description: r.Description, ZoneUUID: r.ZoneUUID,
		ImageUUID: r.ImageUUID, InstanceOfferingUUID: r.InstanceOfferingUUID,
		Platform: r.Platform, Architecture: r.Architecture, DefaultL3NetworkUUID: r.DefaultL3NetworkUUID,
		Type: r.Type, HypervisorType: "KVM", MemorySize: r.MemorySize, ReservedMemorySize: r.ReservedMemorySize,
		CPUNum: r.CPUNum, CPUSpeed: r.CPUSpeed, AllocatorStrategy: r.AllocatorStrategy,
		CreateDate: created, LastOpDate: zstack.Now(), State: state, GuestOsType: r.GuestOsType,
		VMNics: []zstack.VmNicInventory{}, AllVolumes: []zstack.VolumeInventory{}, VMCdRoms: []zstack.VmCdRomInventory{},
	}
	if pl != nil {
		vm.ZoneUUID, vm.ClusterUUID, vm.AllocatorStrategy = pl.ZoneUUID, pl.ClusterUUID, pl.AllocatorStrategy
		if c := ix.Clusters[pl.ClusterUUID]; c != nil {
			vm.HypervisorType = c.HypervisorType
		}
		vm.LastHostUUID = pl.HostUUID
		if state == zstack.VMRunning {
			vm.HostUUID = pl.HostUUID
		}
	}
	for _, v := range r.Volumes {
		vol := zstack.VolumeInventory{
			UUID: v.UUID, Name: v.Name, VMInstanceUUID: r.VMUUID, Type: v.Type, Format: v.Format,
			Size: v.Size, DeviceID: v.DeviceID, State: zstack.VolumeEnabled, Status: zstack.VolumeNotInstantiated,
			CreateDate: created, LastOpDate: created,
		}
		if v.Type == backup.VolumeRoot {
			vm.RootVolumeUUID = v.UUID
			vol.RootImageUUID = r.ImageUUID
		}
		if pl != nil {
			vol.PrimaryStorageUUID = pl.VolumeStorage[v.UUID]
			if f, ok := rec.Checkpoints.Volumes[v.UUID]; ok {
				vol.InstallPath, vol.ActualSize, vol.Status = f.InstallPath, f.ActualSize, zstack.VolumeReady
				if f.Backing != nil {
					vol.Format = "qcow2" // the overlay, hydrated
				}
			}
		}
		if v.Type != backup.VolumeRoot {
			vol.LastAttachDate = created
		}
		vm.AllVolumes = append(vm.AllVolumes, vol)
	}
	for _, n := range rec.Checkpoints.NICs {
		nic := zstack.VmNicInventory{
			UUID: n.UUID, VMInstanceUUID: r.VMUUID, UsedIPUUID: n.UsedIPUUID, L3NetworkUUID: n.L3NetworkUUID,
			IP: n.IP, Mac: n.Mac, HypervisorType: vm.HypervisorType, Netmask: n.Netmask, Gateway: n.Gateway,
			MetaData: n.MetaData, IPVersion: 4, DriverType: n.DriverType,
			InternalName: fmt.Sprintf("vnic%d.%d", r.InternalID, n.DeviceID), DeviceID: n.DeviceID,
			Type: "VNIC", State: n.State, CreateDate: created, LastOpDate: created,
			UsedIPs: []zstack.UsedIPInventory{{
				UUID: n.UsedIPUUID, IPRangeUUID: n.IPRangeUUID, L3NetworkUUID: n.L3NetworkUUID, IPVersion: 4,
				IP: n.IP, Netmask: n.Netmask, Gateway: n.Gateway, IPInLong: n.IPInLong, VMNicUUID: n.UUID,
				CreateDate: created, LastOpDate: created,
			}},
		}
		vm.VMNics = append(vm.VMNics, nic)
	}
	return vm
}
