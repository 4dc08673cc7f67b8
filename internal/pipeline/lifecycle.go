package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// The life cycle of a restored VM, as ZStack's VmInstanceBase runs it: destroy (the domain is
// stopped, the host capacity and addresses given back as under ZStack's default deletion
// policy, and the VM kept as Destroyed, recoverable), expunge (everything the restore still
// holds is released and the VM record removed), recover (host capacity and addresses taken
// again, Destroyed back to Stopped), stop (grace or cold), start, reboot (a stop then a
// start, as ZStack's reboot flow). Each is a job of its own, queued, polled and cancelled
// like a restore, and checks its account against the VM's owner when it runs.
//
// Safety under at-least-once delivery: the operations of one VM run one at a time (the VM's
// lock); each step is idempotent (a stopped domain stops again as a no-op, a released
// address releases again as a no-op), and a re-run that finds the VM already in the
// operation's end state has nothing left to do. An expunge releases the VM record last, in
// a recorded step (store.DeleteVM), so an interrupted one finds its VM, or the record's
// tombstone, again and finishes.

// vmLockTTL bounds how long a dead worker's VM lock outlives it; it is renewed every lockRenew.
const vmLockTTL = lockTTL

// endState is the VM state each operation ends in ("" for expunge: no VM).
var endState = map[string]string{
	job.OpDestroy: zstack.VMDestroyed, job.OpRecover: zstack.VMStopped, job.OpStop: zstack.VMStopped,
	job.OpStart: zstack.VMRunning, job.OpReboot: zstack.VMRunning,
}

// HandleVMOperation is the asynq handler of VM operation tasks.
func (p *Pipeline) HandleVMOperation(ctx context.Context, t *asynq.Task) error {
	jobUUID := string(t.Payload())
	if !zstack.IsUUID(jobUUID) {
		return fmt.Errorf("vm operation task with payload %q is not a job uuid: %w", jobUUID, asynq.SkipRetry)
	}
	log := p.Log.With("job", jobUUID)
	cancelled, unwatch := p.Events.WatchCancel(jobUUID)
	defer unwatch()
	prev, rec, err := p.Store.StartAttempt(ctx, jobUUID, "")
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("vm operation task for a job that no longer exists; dropping it")
		return nil
	}
	if err != nil {
		err, _ = p.outage(ctx, log, err)
		return err
	}
	if prev.Terminal() {
		return p.notify(ctx, rec)
	}
	if rec.Op == nil {
		return fmt.Errorf("job %s is no VM operation: %w", jobUUID, asynq.SkipRetry)
	}
	token := zstack.NewUUID()
	ok, err := p.Store.LockVM(ctx, rec.Op.VMUUID, token, vmLockTTL)
	if err != nil {
		err, _ = p.outage(ctx, log, err)
		return err
	}
	if !ok {
		p.handBack(ctx, jobUUID, metrics.HandBackRunningElsewhere)
		return fmt.Errorf("another operation runs on VM %s: %w", rec.Op.VMUUID, queue.ErrBusy)
	}
	defer p.Store.UnlockVM(context.WithoutCancel(ctx), rec.Op.VMUUID, token)

	work, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go p.keepVMLock(work, stop, rec.Op.VMUUID, token)
	run, cancelDeadline := jobContext(work, stop, cancelled, rec)
	defer cancelDeadline()
	result, err := p.runVMOperation(run, rec)
	return p.endVMOperation(ctx, run, rec, result, err)
}

// keepVMLock renews the VM's lock until ctx ends; losing it stops the operation.
func (p *Pipeline) keepVMLock(ctx context.Context, stop context.CancelCauseFunc, vm, token string) {
	p.keepLockWith(ctx, stop, func(ctx context.Context) (bool, error) { return p.Store.LockVM(ctx, vm, token, vmLockTTL) })
}

// endVMOperation ends the job with the operation's outcome, or hands it back to the queue.
func (p *Pipeline) endVMOperation(ctx, run context.Context, rec *job.Record, result json.RawMessage, err error) error {
	op := rec.Op
	if err == nil {
		if _, ferr := p.Store.FinishJob(ctx, rec.UUID, job.Succeeded, result, nil); ferr != nil {
			return ferr
		}
		p.Metrics.JobEnded(string(job.Succeeded), "", rec.UUID, time.Since(rec.CreatedAt))
		p.Log.Info("vm operation done", "job", rec.UUID, "op", op.Name, "vm", op.VMUUID)
		return p.notify(ctx, rec)
	}
	var e *zstack.ErrorCode
	state := job.Failed
	switch cause := context.Cause(run); {
	case errors.Is(cause, errCancelled):
		state, e = job.Cancelled, zstack.Errorf(zstack.CodeCancelled, "%s was cancelled; run it again to finish it", op)
	case errors.Is(cause, errTimedOut):
		e = zstack.Errorf(zstack.CodeTimeout, "%s did not finish in time: timeout after %ds", op, int(rec.Timeout/time.Second))
	case ctx.Err() != nil, errors.Is(cause, errLockLost):
		p.handBack(context.WithoutCancel(ctx), rec.UUID, metrics.HandBackShutdown)
		return fmt.Errorf("%s interrupted: %w: %w", op, err, queue.ErrBusy)
	}
	if e == nil {
		if store.Unavailable(err) {
			err, _ = p.outage(ctx, p.Log, err)
			return err
		}
		if ec, ok := zstack.AsErrorCode(err); ok {
			e = ec
		} else if queue.RetriesLeft(ctx) {
			p.Log.Warn("vm operation failed; it will be retried", "job", rec.UUID, "op", op.Name, "err", err)
			return err
		} else {
			e = zstack.Operation(zstack.Errorf(zstack.CodeInternal, "%s kept failing and its retries are exhausted: %v", op, err))
		}
	}
	if _, ferr := p.Store.FinishJob(context.WithoutCancel(ctx), rec.UUID, state, nil, e); ferr != nil {
		return ferr
	}
	p.Metrics.JobEnded(string(state), e.Root().Code, rec.UUID, time.Since(rec.CreatedAt))
	p.Log.Info("vm operation ended without doing it", "job", rec.UUID, "op", op.Name, "vm", op.VMUUID, "code", e.Root().Code, "details", e.Root().Details)
	if err := p.notify(ctx, rec); err != nil {
		return err
	}
	return fmt.Errorf("%s: %w", e.Error(), asynq.SkipRetry)
}

// runVMOperation checks the VM's state and runs the operation; it returns the VM inventory
// the operation answers with (none for destroy and expunge).
func (p *Pipeline) runVMOperation(ctx context.Context, rec *job.Record) (json.RawMessage, error) {
	op := rec.Op
	if err := p.Store.SetJobStage(ctx, rec.UUID, op.Stage()); err != nil {
		return nil, err
	}
	end := p.Metrics.StartStage(op.Stage(), rec.UUID)
	defer end()
	r, err := p.Store.GetVMRecord(ctx, op.VMUUID)
	if errors.Is(err, store.ErrNotFound) {
		if op.Name == job.OpExpunge {
			// Gone: an earlier run of this expunge (or another) removed it, or was
			// interrupted while removing its record, which is finished now.
			_, err := p.Store.FinishVMRemoval(ctx, op.VMUUID)
			return nil, err
		}
		return nil, op.NotFound()
	}
	if err != nil {
		return nil, err
	}
	if err := p.checkVMOwner(ctx, rec, r); err != nil {
		return nil, err
	}
	// A run after one that started acting may find the VM in the end state already.
	acted := rec.Checkpoints.StageDone(op.Stage())
	if e := op.CheckState(r.VM.State); e != nil && !(acted && r.VM.State == endState[op.Name]) {
		return nil, e
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.Store.SaveCheckpoint(ctx, rec.UUID, op.Stage(), "", nil); err != nil {
		return nil, err
	}
	if op.Name == job.OpExpunge {
		_, err := p.Expunge(ctx, r)
		return nil, err
	}
	if err := p.changeState(ctx, op, r); err != nil {
		return nil, err
	}
	if err := p.Store.UpdateVM(ctx, r); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, op.NotFound()
		}
		return nil, err
	}
	if op.Name == job.OpDestroy {
		return nil, nil
	}
	return json.Marshal(r.VM)
}

// checkVMOwner applies, when the operation runs, the tenancy rule the API applied when it
// was queued (as a restore checks its group's owner when it runs): an account acts on its
// own VMs, a SystemAdmin on any. An account deleted, or no longer SystemAdmin, meanwhile
// finds another account's VM unknown, as the API would have answered.
func (p *Pipeline) checkVMOwner(ctx context.Context, rec *job.Record, r *store.VMRecord) error {
	if r.AccountUUID == rec.AccountUUID {
		return nil
	}
	admin, err := p.Store.SystemAdmin(ctx, rec.AccountUUID)
	if err != nil {
		return err
	}
	if !admin {
		p.Log.Warn("vm operation refused: its account may no longer act on the VM", "job", rec.UUID, "account", rec.AccountUUID, "vm", r.VM.UUID, "owner", r.AccountUUID)
		return rec.Op.NotFound()
	}
	return nil
}

// changeState drives the hypervisor for an operation and sets the VM's new state in r.
func (p *Pipeline) changeState(ctx context.Context, op *job.VMOp, r *store.VMRecord) error {
	vm := r.VM
	switch op.Name {
	case job.OpDestroy:
		if err := p.destroy(ctx, r, op.DeleteMode == job.DeleteEnforcing); err != nil {
			return err
		}
	case job.OpRecover:
		if err := p.recover(ctx, r); err != nil {
			return err
		}
		vm.State = zstack.VMStopped
	case job.OpStop:
		if err := p.stopDomain(ctx, r, op.StopType == job.StopGrace); err != nil {
			return vmError(zstack.CodeVMStop, vm, err)
		}
		vm.State, vm.HostUUID = zstack.VMStopped, ""
	case job.OpStart, job.OpReboot:
		code := zstack.CodeVMStart
		if op.Name == job.OpReboot {
			code = zstack.CodeVMReboot
			if err := p.stopDomain(ctx, r, true); err != nil {
				return vmError(code, vm, err)
			}
		}
		if op.HostUUID != "" && op.HostUUID != vm.LastHostUUID {
			return zstack.Wrap(code, zstack.InvalidArgument("VM[uuid:%s] can only start on the host its volumes and domain are on, host[uuid:%s]; vmrestore does not migrate VMs", vm.UUID, vm.LastHostUUID))
		}
		state, err := p.startDomain(ctx, r)
		if err != nil {
			return vmError(code, vm, err)
		}
		vm.State, vm.HostUUID = state, vm.LastHostUUID
	}
	vm.LastOpDate = zstack.Now()
	return nil
}

// destroy stops a VM's domain and gives back what ZStack's destroy flow gives back under its
// default deletion policy (vm.deletionPolicy Delay): the host's CPU, memory and VM slot
// (VmReturnHostFlow) and the NICs' addresses (VmReturnReleaseNicFlow keeps each NIC and its
// MAC, without IP). The volumes, their files and primary-storage bytes, the MACs, the domain
// definition and the uuid stay for a recover, until the expunge. Each step is idempotent,
// so a destroy that runs again after an interruption frees nothing twice. With enforcing
// (deleteMode=Enforcing) a domain that cannot be stopped does not stop the destroy: the
// expunge removes it.
func (p *Pipeline) destroy(ctx context.Context, r *store.VMRecord, enforcing bool) error {
	vm := r.VM
	err := p.stopDomain(ctx, r, false)
	if err != nil && enforcing && !errors.Is(err, context.Canceled) {
		p.Log.Warn("the domain could not be stopped; Enforcing destroys the VM anyway, its expunge removes the domain", "vm", vm.UUID, "err", err)
		err = nil
	}
	if err != nil {
		return zstack.Wrap(zstack.CodeVMDestroy, zstack.Errorf(zstack.CodeOperation, "failed to stop VM[uuid:%s] on its host: %v; retry, or destroy it with deleteMode=Enforcing", vm.UUID, err))
	}
	if _, err := p.Store.ReturnHostCapacity(ctx, r.JobUUID); err != nil {
		return err
	}
	if err := p.returnAddresses(ctx, r); err != nil {
		return err
	}
	vm.State, vm.HostUUID, vm.LastOpDate = zstack.VMDestroyed, "", zstack.Now()
	return nil
}

// returnAddresses gives back every NIC's address and clears it from the NIC (its MAC stays).
func (p *Pipeline) returnAddresses(ctx context.Context, r *store.VMRecord) error {
	ix, err := p.Catalog.Current(ctx)
	if err != nil {
		return err
	}
	for i := range r.VM.VMNics {
		n := &r.VM.VMNics[i]
		if err := p.Store.ReleaseIP(ctx, n.L3NetworkUUID, ix.Ranges[n.L3NetworkUUID], nicOwner(r, n)); err != nil {
			return err
		}
		n.IP, n.UsedIPUUID, n.Netmask, n.Gateway, n.UsedIPs = "", "", "", "", []zstack.UsedIPInventory{}
	}
	return nil
}

// nicOwner is the owner under which a restored VM's NIC holds its address and MAC.
func nicOwner(r *store.VMRecord, n *zstack.VmNicInventory) string {
	return job.PlannedNIC{UUID: n.UUID}.Owner(r.JobUUID)
}

// recover takes back what destroy gave back, all or nothing: the host's capacity (the VM
// can only run on the host its volumes and domain are on) and an address for each NIC, by
// its L3 network's allocation strategy. ZStack's recover takes neither and leaves that to
// the next start (VmAllocateHostForStoppedVmFlow, VmAllocateNicForStartingVmFlow); a stopped
// vmrestore VM holds its host's capacity and its addresses, so recover makes the checks
// that start would, and fails as start would when the host is full or the L3 has no
// address left.
func (p *Pipeline) recover(ctx context.Context, r *store.VMRecord) (err error) {
	vm := r.VM
	full, err := p.Store.RetakeHostCapacity(ctx, r.JobUUID)
	if err != nil {
		return err
	}
	if full != "" {
		what := "memory"
		if strings.HasSuffix(full, ":cpu") {
			what = "CPU"
		}
		return zstack.Operation(zstack.Errorf(zstack.CodeHostAllocation,
			"no host having cpu[%d], memory[%d bytes] found: VM[uuid:%s] can only run on host[uuid:%s], whose %s was taken by other VMs after the destroy gave it back; free capacity there (stop, destroy or expunge another VM) and recover it again",
			vm.CPUNum, vm.MemorySize, vm.UUID, vm.LastHostUUID, what))
	}
	defer func() {
		if err != nil { // all or nothing: what this run took goes back
			undo := context.WithoutCancel(ctx)
			if _, rerr := p.Store.ReturnHostCapacity(undo, r.JobUUID); rerr != nil {
				err = errors.Join(err, rerr)
			}
			if rerr := p.returnAddresses(undo, r); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	ix, err := p.Catalog.Current(ctx)
	if err != nil {
		return err
	}
	now := zstack.Now()
	for i := range vm.VMNics {
		n := &vm.VMNics[i]
		if n.IP != "" {
			continue
		}
		builder := &job.Record{UUID: r.JobUUID} // the NIC's address is held under its restore's job
		a, err := p.allocateNIC(ctx, ix, builder, job.PlannedNIC{NIC: job.NIC{L3NetworkUUID: n.L3NetworkUUID, Mac: n.Mac}, UUID: n.UUID, DeviceID: n.DeviceID})
		if err != nil {
			return err
		}
		n.IP, n.UsedIPUUID, n.Netmask, n.Gateway = a.IP, zstack.NewUUID(), a.Netmask, a.Gateway
		n.UsedIPs = []zstack.UsedIPInventory{{UUID: n.UsedIPUUID, IPRangeUUID: a.IPRangeUUID, L3NetworkUUID: n.L3NetworkUUID, IPVersion: 4,
			IP: a.IP, Netmask: a.Netmask, Gateway: a.Gateway, IPInLong: a.IPInLong, VMNicUUID: n.UUID, CreateDate: now, LastOpDate: now}}
	}
	return nil
}

// vmError wraps a hypervisor failure in the operation's VmErrors code; errors no retry fixes
// end the job, others are retried.
func vmError(code string, vm *zstack.VmInstanceInventory, err error) error {
	if errors.Is(err, hypervisor.ErrNotBootable) {
		return zstack.Wrap(code, zstack.Errorf(zstack.CodeOperation, "VM[uuid:%s, name:%s]: %v", vm.UUID, vm.Name, err))
	}
	if ec, ok := zstack.AsErrorCode(err); ok {
		return zstack.Wrap(code, ec)
	}
	return err
}

// vmHost is the hypervisor's view of the host a VM's domain is on; ok is false for a VM
// restored with JustCreate, which has none.
func (p *Pipeline) vmHost(ctx context.Context, vm *zstack.VmInstanceInventory) (hypervisor.Host, bool, error) {
	if vm.LastHostUUID == "" {
		return hypervisor.Host{}, false, nil
	}
	ix, err := p.Catalog.Current(ctx)
	if err != nil {
		return hypervisor.Host{}, false, err
	}
	h, err := hostOf(ix, vm.LastHostUUID)
	return h, err == nil, err
}

func (p *Pipeline) stopDomain(ctx context.Context, r *store.VMRecord, graceful bool) error {
	h, ok, err := p.vmHost(ctx, r.VM)
	if err != nil || !ok {
		return err
	}
	return p.Hypervisor.Stop(ctx, r.VM.UUID, r.JobUUID, h, graceful)
}

func (p *Pipeline) startDomain(ctx context.Context, r *store.VMRecord) (string, error) {
	h, ok, err := p.vmHost(ctx, r.VM)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", zstack.Errorf(zstack.CodeOperation, "VM[uuid:%s] was restored with strategy JustCreate: it has no host, volumes or NICs to start; restore its group again with InstantStart or CreateStopped", r.VM.UUID)
	}
	return p.Hypervisor.Start(ctx, r.VM.UUID, r.JobUUID, h)
}

// Freed is what an expunge gave back.
type Freed struct {
	CPU          int64
	MemoryBytes  int64
	StorageBytes int64
	IPs          int
	MACs         int
	Files        int
}

// Held is what a VM's restore holds: its capacity reservation, addresses, MACs and files.
func (p *Pipeline) Held(ctx context.Context, r *store.VMRecord) (Freed, error) {
	var f Freed
	resv, err := p.Store.GetReservation(ctx, r.JobUUID)
	switch {
	case err == nil:
		f.CPU, f.MemoryBytes, f.StorageBytes = resv.Held()
	case !errors.Is(err, store.ErrNotFound):
		return f, err
	}
	for _, n := range r.VM.VMNics {
		if n.IP != "" {
			f.IPs++
		}
		if n.Mac != "" {
			f.MACs++
		}
	}
	for _, v := range r.VM.AllVolumes {
		if v.InstallPath != "" {
			f.Files++
		}
	}
	return f, nil
}

// Expunge releases everything the restore of a VM took and removes the VM, through the
// restore's own release path (release), and reports what it freed (read before anything is
// released).
func (p *Pipeline) Expunge(ctx context.Context, r *store.VMRecord) (Freed, error) {
	f, err := p.Held(ctx, r)
	if err != nil {
		return f, err
	}
	if err := p.release(ctx, footprint(r)); err != nil {
		return f, err
	}
	p.Log.Info("VM expunged: its domain, volumes, addresses, MACs, capacity and record are released", "vm", r.VM.UUID, "restoreJob", r.JobUUID)
	return f, nil
}

// footprint describes, from a VM's stored inventory, what its restore job took, in the form
// the release path reads (the job's own record is purged hours after it ends; the VM stays).
func footprint(r *store.VMRecord) *job.Record {
	vm := r.VM
	res := &job.Resolved{VMUUID: vm.UUID}
	cp := &job.Checkpoints{Resolved: res}
	storages := map[string]string{}
	for _, v := range vm.AllVolumes {
		res.Volumes = append(res.Volumes, job.PlannedVolume{UUID: v.UUID, Name: v.Name, Type: v.Type, DeviceID: v.DeviceID, Format: v.Format, Size: v.Size})
		if v.PrimaryStorageUUID != "" {
			storages[v.UUID] = v.PrimaryStorageUUID
		}
	}
	if vm.LastHostUUID != "" {
		cp.Placement = &job.Placement{HostUUID: vm.LastHostUUID, ClusterUUID: vm.ClusterUUID, ZoneUUID: vm.ZoneUUID, VolumeStorage: storages}
		cp.Domain = &job.DomainRef{HostUUID: vm.LastHostUUID}
	}
	for _, n := range vm.VMNics {
		res.NICs = append(res.NICs, job.PlannedNIC{NIC: job.NIC{L3NetworkUUID: n.L3NetworkUUID}, UUID: n.UUID, DeviceID: n.DeviceID})
	}
	return &job.Record{UUID: r.JobUUID, AccountUUID: r.AccountUUID, GeneratedVMUUID: vm.UUID, Checkpoints: cp}
}
