package plan

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/planspec"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/webhook"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Service is what the API does with plans: accept (or dry-run) them and carry out the
// operator's pause, resume, cancel and retry. Errors are ZStack ErrorCodes.
type Service struct {
	Store   *store.Store
	Catalog *store.CatalogCache
	// WebHooks checks plans' web hook URLs when they are submitted.
	WebHooks *webhook.Policy
}

// Submitted is the outcome of Submit.
type Submitted struct {
	UUID     string
	Existing bool // the client token named an earlier plan
	DryRun   *apiv1.DryRunReport
}

// Submit validates a plan and stores it (or, with dryRun, simulates it and stores nothing).
// A client token already used by the account returns the first plan.
func (s *Service) Submit(ctx context.Context, spec *apiv1.PlanSpec, account string, admin, dryRun bool) (*Submitted, error) {
	// A client token already used answers its plan before anything is validated: that plan
	// may be running and hold the very addresses this submission would now find in use.
	if spec.ClientToken != "" && !dryRun {
		if uuid, err := s.Store.PlanOfClientToken(ctx, account, spec.ClientToken); err != nil || uuid != "" {
			if err != nil {
				return nil, err
			}
			return &Submitted{UUID: uuid, Existing: true}, nil
		}
	}
	ix, err := s.Catalog.Current(ctx)
	if err != nil {
		return nil, err
	}
	groups, err := s.Store.ListBackupGroups(ctx)
	if err != nil {
		return nil, err
	}
	macs, err := s.Store.UsedMacs(ctx)
	if err != nil {
		return nil, err
	}
	items, err := planspec.Build(ctx, spec, planspec.Input{Catalog: ix, Groups: groups, Account: account, Admin: admin, UsedMacs: macs, WebHooks: s.WebHooks,
		UsedIPs: func(l3 string) (map[string]string, error) { return s.Store.UsedIPs(ctx, l3) }})
	if err != nil {
		return nil, err
	}
	if dryRun {
		byUUID := make(map[string]store.IndexedGroup, len(groups))
		for _, g := range groups {
			byUUID[g.GroupUUID] = g
		}
		rep, err := DryRun(ctx, ix, s.Store, byUUID, items)
		if err != nil {
			return nil, err
		}
		owner := account
		if admin {
			owner = ""
		}
		vms, err := s.Store.ListVMs(ctx, owner)
		if err != nil {
			return nil, err
		}
		existing := map[string][]string{}
		for _, vm := range vms {
			existing[vm.Name] = append(existing[vm.Name], vm.UUID)
		}
		WarnNameCollisions(rep, existing)
		rep.Mode = modeOf(spec)
		rep.TestNetworks = planspec.TestNetworks(spec, ix)
		return &Submitted{DryRun: rep}, nil
	}
	uuid := zstack.NewUUID()
	meta, err := Meta(uuid, spec, account, items)
	if err != nil {
		return nil, err
	}
	if err := s.Store.CreatePlan(ctx, meta, items); err != nil {
		var exists *store.ErrPlanExists
		if errors.As(err, &exists) {
			return &Submitted{UUID: exists.UUID, Existing: true}, nil
		}
		return nil, err
	}
	return &Submitted{UUID: uuid}, nil
}

// Pause stops starting items (running ones go on); Resume starts them again.
func (s *Service) Pause(ctx context.Context, uuid string) error {
	return s.transition(ctx, uuid, store.PlanPaused, "paused by the operator", store.PlanRunning)
}

// Resume restarts a paused plan.
func (s *Service) Resume(ctx context.Context, uuid string) error {
	if err := s.refuseCleanedUp(ctx, uuid, "resumed"); err != nil {
		return err
	}
	return s.transition(ctx, uuid, store.PlanRunning, "", store.PlanPaused)
}

// Cancel stops a plan: pending items never start, running ones stop and compensate.
func (s *Service) Cancel(ctx context.Context, uuid string) error {
	return s.transition(ctx, uuid, store.PlanCancelling, "cancelled by the operator", store.PlanRunning, store.PlanPaused)
}

func (s *Service) transition(ctx context.Context, uuid, to, reason string, from ...string) error {
	_, st, err := s.Store.GetPlan(ctx, uuid)
	if err != nil {
		return err
	}
	for _, f := range from {
		if st.State == f {
			return s.Store.SetPlanState(ctx, uuid, to, reason)
		}
	}
	if st.State == to {
		return nil
	}
	return zstack.Errorf(zstack.CodeOperation, "plan %s is %s; it cannot become %s", uuid, st.State, to)
}

// Retry puts the failed and cancelled items back in the queue (each will run as a new job)
// and runs the plan again. It returns how many items it requeued.
func (s *Service) Retry(ctx context.Context, uuid string) (int, error) {
	_, st, err := s.Store.GetPlan(ctx, uuid)
	if err != nil {
		return 0, err
	}
	if st.State == store.PlanCancelling {
		return 0, zstack.Errorf(zstack.CodeOperation, "plan %s is being cancelled; retry once it has ended", uuid)
	}
	if err := s.refuseCleanedUp(ctx, uuid, "retried"); err != nil {
		return 0, err
	}
	token := zstack.NewUUID()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := s.Store.LockPlan(ctx, uuid, token, lockTTL)
		if err != nil {
			return 0, err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return 0, zstack.Errorf(zstack.CodeOperation, "plan %s is busy; try again", uuid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer s.Store.UnlockPlan(context.WithoutCancel(ctx), uuid, token)

	listing, err := s.Store.PlanIndex(ctx, uuid)
	if err != nil {
		return 0, err
	}
	statuses, err := s.Store.PlanStatuses(ctx, uuid)
	if err != nil {
		return 0, err
	}
	change := store.NewPlanChange(uuid)
	var requeue []store.QueuedItem
	for _, it := range listing {
		st, ok := statuses[it.Index]
		if !ok || (st.State != store.ItemFailed && st.State != store.ItemCancelled) {
			continue
		}
		change.Item(it.Index, st, store.ItemStatus{State: store.ItemPending, Attempt: st.Attempt, BytesDone: st.BytesDone, DataDone: st.DataDone})
		requeue = append(requeue, store.QueuedItem{Tier: it.Tier, Index: it.Index})
	}
	if len(requeue) == 0 {
		return 0, nil
	}
	if err := s.Store.PlanRequeue(ctx, uuid, requeue); err != nil {
		return 0, err
	}
	if err := s.Store.ApplyPlanChange(ctx, change); err != nil {
		return 0, err
	}
	return len(requeue), s.Store.SetPlanState(ctx, uuid, store.PlanRunning, "retrying "+strconv.Itoa(len(requeue))+" item(s)")
}

// modeOf is a plan's mode, recovery unless it says drill.
func modeOf(spec *apiv1.PlanSpec) string {
	if spec.IsDrill() {
		return apiv1.ModeDrill
	}
	return apiv1.ModeRecovery
}

func sortByTier(items []store.PlanItem) {
	sort.SliceStable(items, func(a, b int) bool {
		if items[a].Tier != items[b].Tier {
			return items[a].Tier < items[b].Tier
		}
		return items[a].Index < items[b].Index
	})
}

func sortByIndex(items []apiv1.DryRunItem) {
	sort.Slice(items, func(a, b int) bool { return items[a].Index < items[b].Index })
}

// refuseCleanedUp refuses to run a plan again once a cleanup of it has started: the cleanup
// lists the plan's VMs once, and VMs made after that would be left behind.
func (s *Service) refuseCleanedUp(ctx context.Context, uuid, what string) error {
	var c apiv1.PlanCleanup
	found, err := s.Store.GetPlanCleanup(ctx, uuid, &c)
	if err != nil || !found {
		return err
	}
	return zstack.Errorf(zstack.CodeOperation, "plan %s has been cleaned up (cleanup %s); it cannot be %s: submit the plan again instead", uuid, c.State, what)
}
