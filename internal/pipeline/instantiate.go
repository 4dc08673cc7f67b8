package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/overlay"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// instantiate hands the VM to the hypervisor driver and records what the host reported. A
// VM the hypervisor refuses, or one that fails its boot check, fails the job at once (it is
// compensated like any failure); a host that cannot be reached is retried.
func (p *Pipeline) instantiate(ctx context.Context, ix *catalog.Index, rec *job.Record) error {
	vm, err := p.domainSpec(ix, rec)
	if err != nil {
		return err
	}
	out, err := p.Hypervisor.Instantiate(ctx, vm, rec.Request.Strategy, rec.Request.BootCheck)
	var bootErr *hypervisor.BootCheckError
	switch {
	case errors.As(err, &bootErr):
		p.Metrics.BootChecks.WithLabelValues(bootErr.Check.Mode, "failed").Inc()
		return zstack.Operation(zstack.Errorf(zstack.CodeOperation, "VM[uuid:%s, name:%s] on %s: %v",
			vm.UUID, vm.Name, vm.Host, bootErr))
	case errors.Is(err, hypervisor.ErrNotBootable):
		return zstack.Operation(zstack.Errorf(zstack.CodeOperation, "failed to start VM[uuid:%s, name:%s]: %v", vm.UUID, vm.Name, err))
	case err != nil:
		return err
	}
	if c := rec.Request.BootCheck; c != nil {
		p.Metrics.BootChecks.WithLabelValues(c.Mode, "passed").Inc()
		p.Log.Info("boot check passed", "vm", vm.UUID, "host", vm.Host.UUID, "check", c.Spec(), "how", out.BootCheck)
	}
	if instant(rec) && rec.Instant == nil {
		rec.Instant = &job.Instant{State: job.InstantRunning, RunningAt: time.Now()}
		if err := p.Store.SetInstant(ctx, rec.UUID, *rec.Instant); err != nil {
			return err
		}
		p.Log.Info("the VM runs from its backups; the hydrate stage pulls the data in", "vm", vm.UUID, "since_request", time.Since(rec.CreatedAt).Round(time.Millisecond).String())
	}
	inst := &job.Instance{HostUUID: vm.Host.UUID, State: out.State, BootCheck: out.BootCheck, Driver: p.Hypervisor.Name()}
	rec.Checkpoints.Instance = inst
	if hydrates(rec) {
		return p.Store.SaveCheckpoint(ctx, rec.UUID, job.StageInstantiate, store.CheckpointInstance, inst)
	}
	// Nothing to hydrate: the hydrate stage is passed in the same write (one round trip less).
	rec.Checkpoints.Done = append(rec.Checkpoints.Done, job.StageHydrate)
	now := time.Now()
	return p.Store.SaveCheckpoints(ctx, rec.UUID, store.Checkpoint{Stage: job.StageInstantiate, Kind: store.CheckpointInstance, Value: inst, Ended: now},
		store.Checkpoint{Stage: job.StageHydrate, Ended: now})
}

// domainSpec gathers what the driver needs from the job's checkpoints and the catalog.
func (p *Pipeline) domainSpec(ix *catalog.Index, rec *job.Record) (*hypervisor.VM, error) {
	r := rec.Checkpoints.Resolved
	vm := &hypervisor.VM{
		UUID: r.VMUUID, Name: r.Name, InternalID: r.InternalID, CPUNum: r.CPUNum, MemorySize: r.MemorySize,
		Platform: r.Platform, JobUUID: rec.UUID, GroupUUID: rec.Request.GroupUUID,
	}
	pl := rec.Checkpoints.Placement
	if pl == nil {
		return vm, nil // JustCreate: no host
	}
	host, err := hostOf(ix, pl.HostUUID)
	if err != nil {
		return nil, err
	}
	vm.Host = host
	vm.BeforeDefine = func(ctx context.Context) error {
		rec.Checkpoints.Domain = &job.DomainRef{HostUUID: host.UUID}
		return p.Store.SaveDomainRef(ctx, rec.UUID, *rec.Checkpoints.Domain)
	}
	for _, v := range r.Volumes {
		f, ok := rec.Checkpoints.Volumes[v.UUID]
		if !ok {
			return nil, fmt.Errorf("volume %s has no restored file recorded; the clone stage did not finish", v.UUID)
		}
		disk := hypervisor.Disk{VolumeUUID: v.UUID, DeviceID: v.DeviceID, Path: f.InstallPath,
			Format: v.Format, Root: v.Type == backup.VolumeRoot}
		if b := f.Backing; b != nil {
			disk.Format = "qcow2"
			if f.RunsFromBacking() {
				disk.Path = overlay.PathOf(f.InstallPath)
				disk.BackingPath, disk.BackingFormat = b.Path, b.Format
			}
		}
		vm.Disks = append(vm.Disks, disk)
	}
	for _, n := range rec.Checkpoints.NICs {
		nic := hypervisor.NIC{DeviceID: n.DeviceID, MAC: n.Mac, Model: n.DriverType,
			InternalName: fmt.Sprintf("vnic%d.%d", r.InternalID, n.DeviceID)}
		if l3 := ix.L3Networks[n.L3NetworkUUID]; l3 != nil {
			if l2 := ix.L2Networks[l3.L2NetworkUUID]; l2 != nil && l2.PhysicalInterface != "" {
				nic.Bridge = hypervisor.BridgeName(l2.PhysicalInterface, l2.Vlan)
			} else if p.Hypervisor.Name() != "simulator" {
				return nil, zstack.Operation(zstack.Errorf(zstack.CodeOperation,
					"l3 network[uuid:%s] is on l2 network[uuid:%s], which has no physicalInterface in the site catalog; the hypervisor bridge is named after it (br_<physicalInterface>)",
					l3.UUID, l3.L2NetworkUUID))
			}
		}
		vm.NICs = append(vm.NICs, nic)
	}
	return vm, nil
}

// hostOf is the hypervisor's view of a catalog host.
func hostOf(ix *catalog.Index, uuid string) (hypervisor.Host, error) {
	h := ix.Hosts[uuid]
	if h == nil {
		return hypervisor.Host{}, zstack.Operation(zstack.Errorf(zstack.CodeOperation,
			"host[uuid:%s] chosen for the VM was removed from the site catalog", uuid))
	}
	return hypervisor.Host{UUID: h.UUID, Name: h.Name, ManagementIP: h.ManagementIP}, nil
}

// destroyDomain removes the VM's domain if the job may have defined one.
func (p *Pipeline) destroyDomain(ctx context.Context, rec *job.Record) error {
	ref := rec.Checkpoints.Domain
	if ref == nil || rec.Checkpoints.Resolved == nil {
		return nil
	}
	ix, err := p.Catalog.Current(ctx)
	if err != nil {
		return err
	}
	host, err := hostOf(ix, ref.HostUUID)
	if err != nil {
		return err
	}
	return p.Hypervisor.Destroy(ctx, rec.Checkpoints.Resolved.VMUUID, rec.UUID, host)
}
