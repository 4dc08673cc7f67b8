package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// A plan's cleanup destroys and expunges every VM the plan created, highest tier first (the
// reverse of the order they were restored in), once the plan has ended (the API cancels it
// first: pending items never start, running ones stop and give back what they took). It
// records each VM's outcome in the plan's cleanup as it goes; a VM's amounts are recorded
// before its expunge starts (state expunging), so a run that is interrupted and comes back
// finds them, finishes the expunge and counts them once.

// cleanupPlanWait bounds how long a cleanup waits for its cancelled plan to end.
const cleanupPlanWait = 10 * time.Minute

// HandlePlanCleanup is the asynq handler of plan cleanup tasks.
func (p *Pipeline) HandlePlanCleanup(ctx context.Context, t *asynq.Task) error {
	planUUID := string(t.Payload())
	if !zstack.IsUUID(planUUID) {
		return fmt.Errorf("plan cleanup task with payload %q is not a plan uuid: %w", planUUID, asynq.SkipRetry)
	}
	log := p.Log.With("plan", planUUID)
	token := zstack.NewUUID()
	ok, err := p.Store.LockPlanCleanup(ctx, planUUID, token, lockTTL)
	if err != nil {
		err, _ = p.outage(ctx, log, err)
		return err
	}
	if !ok {
		return fmt.Errorf("the cleanup of plan %s runs elsewhere: %w", planUUID, queue.ErrElsewhere)
	}
	defer p.Store.UnlockPlanCleanup(context.WithoutCancel(ctx), planUUID, token)
	work, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go p.keepLockWith(work, stop, func(ctx context.Context) (bool, error) {
		return p.Store.LockPlanCleanup(ctx, planUUID, token, lockTTL)
	})

	var c apiv1.PlanCleanup
	found, err := p.Store.GetPlanCleanup(work, planUUID, &c)
	if err != nil {
		err, _ = p.outage(ctx, log, err)
		return err
	}
	if !found || c.State != apiv1.CleanupRunning {
		return nil // ended by an earlier run
	}
	if err := p.cleanUp(work, &c); err != nil {
		if store.Unavailable(err) || ctx.Err() != nil || errors.Is(context.Cause(work), errLockLost) {
			err, _ = p.outage(ctx, log, err)
			return fmt.Errorf("cleanup of plan %s interrupted; it resumes where it stood: %w: %w", planUUID, err, queue.ErrBusy)
		}
		if queue.RetriesLeft(ctx) {
			log.Warn("plan cleanup failed; it will be retried", "err", err)
			return err
		}
		c.State, c.Reason = apiv1.CleanupFailed, err.Error()
	}
	finished := time.Now()
	c.FinishedAt = &finished
	if err := p.Store.PutPlanCleanup(context.WithoutCancel(ctx), planUUID, &c); err != nil {
		return err
	}
	log.Info("plan cleanup ended", "state", c.State, "vms", c.Freed.VMs, "cpu", c.Freed.CPUNum, "memory", c.Freed.MemoryBytes,
		"storageBytes", c.Freed.StorageBytes, "ips", c.Freed.IPs, "macs", c.Freed.MACs, "files", c.Freed.Files)
	return nil
}

// keepLockWith renews a lock with renew until ctx ends; losing it stops the work.
func (p *Pipeline) keepLockWith(ctx context.Context, stop context.CancelCauseFunc, renew func(context.Context) (bool, error)) {
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(lockRenew):
		}
		ok, err := renew(ctx)
		switch {
		case err == nil && ok:
			renewed = time.Now()
		case err == nil && !ok, time.Since(renewed) >= lockFence:
			stop(errLockLost)
			return
		}
	}
}

// cleanUp waits for the plan to end, lists its VMs and expunges them, highest tier first.
func (p *Pipeline) cleanUp(ctx context.Context, c *apiv1.PlanCleanup) error {
	if err := p.waitPlanEnded(ctx, c.PlanUUID); err != nil {
		return err
	}
	if err := p.listCleanupVMs(ctx, c); err != nil {
		return err
	}
	if err := p.Store.PutPlanCleanup(ctx, c.PlanUUID, c); err != nil {
		return err
	}
	failed := 0
	for i := range c.VMs {
		v := &c.VMs[i]
		if v.State != apiv1.CleanupVMPending && v.State != apiv1.CleanupVMExpunging {
			continue
		}
		if err := p.cleanUpVM(ctx, c, v); err != nil {
			ec, ok := zstack.AsErrorCode(err)
			if !ok {
				return err
			}
			v.State, v.Error = apiv1.CleanupVMFailed, ec
		}
		if v.State == apiv1.CleanupVMFailed {
			failed++
		}
		c.Freed = totalFreed(c.VMs)
		if err := p.Store.PutPlanCleanup(ctx, c.PlanUUID, c); err != nil {
			return err
		}
	}
	c.State = apiv1.CleanupSucceeded
	if failed > 0 {
		c.State, c.Reason = apiv1.CleanupFailed, fmt.Sprintf("%d VM(s) could not be expunged; see their errors, then run the cleanup again", failed)
	}
	c.Freed = totalFreed(c.VMs)
	return nil
}

func totalFreed(vms []apiv1.CleanupVM) apiv1.CleanupFreed {
	var f apiv1.CleanupFreed
	for _, v := range vms {
		if v.State == apiv1.CleanupVMExpunged {
			f.Add(v.Freed)
		}
	}
	return f
}

// waitPlanEnded waits until the plan has ended (the API asked it to cancel).
func (p *Pipeline) waitPlanEnded(ctx context.Context, planUUID string) error {
	deadline := time.Now().Add(cleanupPlanWait)
	for {
		_, st, err := p.Store.GetPlan(ctx, planUUID)
		if err != nil {
			return err
		}
		if store.PlanEnded(st.State) {
			return nil
		}
		if time.Now().After(deadline) {
			return zstack.Errorf(zstack.CodeTimeout, "plan %s is still %s after %s; its running items did not stop: run the cleanup again when it has ended", planUUID, st.State, cleanupPlanWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// listCleanupVMs adds to the cleanup every VM the plan's items created that it does not list
// yet, and orders the list highest tier first, then the reverse of the items' order.
func (p *Pipeline) listCleanupVMs(ctx context.Context, c *apiv1.PlanCleanup) error {
	items, err := p.Store.PlanIndex(ctx, c.PlanUUID)
	if err != nil {
		return err
	}
	statuses, err := p.Store.PlanStatuses(ctx, c.PlanUUID)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, v := range c.VMs {
		listed[v.VMUUID] = true
	}
	for _, it := range items {
		st, ok := statuses[it.Index]
		if !ok || st.VM == "" || listed[st.VM] || st.State != store.ItemSucceeded {
			continue
		}
		c.VMs = append(c.VMs, apiv1.CleanupVM{VMUUID: st.VM, Name: it.Name, Item: it.Index, Tier: it.Tier, State: apiv1.CleanupVMPending})
		listed[st.VM] = true
	}
	sort.SliceStable(c.VMs, func(i, j int) bool {
		if c.VMs[i].Tier != c.VMs[j].Tier {
			return c.VMs[i].Tier > c.VMs[j].Tier
		}
		return c.VMs[i].Item > c.VMs[j].Item
	})
	return nil
}

// cleanUpVM destroys (stops the domain) and expunges one VM under its operation lock.
func (p *Pipeline) cleanUpVM(ctx context.Context, c *apiv1.PlanCleanup, v *apiv1.CleanupVM) error {
	token := zstack.NewUUID()
	for {
		ok, err := p.Store.LockVM(ctx, v.VMUUID, token, vmLockTTL)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		select { // another operation on the VM finishes first
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	defer p.Store.UnlockVM(context.WithoutCancel(ctx), v.VMUUID, token)
	r, err := p.Store.GetVMRecord(ctx, v.VMUUID)
	if errors.Is(err, store.ErrNotFound) {
		// An expunge interrupted while removing the record left it to finish.
		if _, err := p.Store.FinishVMRemoval(ctx, v.VMUUID); err != nil {
			return err
		}
		if v.State == apiv1.CleanupVMExpunging {
			v.State = apiv1.CleanupVMExpunged // an earlier run released it all, and counted it
		} else {
			v.State = apiv1.CleanupVMGone
		}
		return nil
	}
	if err != nil {
		return err
	}
	if v.State == apiv1.CleanupVMPending {
		freed, err := p.holding(ctx, r)
		if err != nil {
			return err
		}
		v.State, v.Freed = apiv1.CleanupVMExpunging, freed
		if err := p.Store.PutPlanCleanup(ctx, c.PlanUUID, c); err != nil {
			return err
		}
	}
	end := p.Metrics.StartStage("expunge", c.UUID)
	defer end()
	if r.VM.State != zstack.VMDestroyed {
		if err := p.destroy(ctx, r, false); err != nil {
			return err
		}
		if err := p.Store.UpdateVM(ctx, r); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if _, err := p.Expunge(ctx, r); err != nil {
		return err
	}
	v.State = apiv1.CleanupVMExpunged
	return nil
}

// holding is what a VM holds, as a cleanup reports it once expunged.
func (p *Pipeline) holding(ctx context.Context, r *store.VMRecord) (apiv1.CleanupFreed, error) {
	h, err := p.Held(ctx, r)
	return apiv1.CleanupFreed{VMs: 1, CPUNum: h.CPU, MemoryBytes: h.MemoryBytes, StorageBytes: h.StorageBytes,
		IPs: h.IPs, MACs: h.MACs, Files: h.Files}, err
}
