package plan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/webhook"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Runner drives the active plans from a worker. Every tick, for each active plan whose lock
// it takes (so one worker drives a plan at a time, and another takes over if it dies), it
// reads the jobs of the running items, records their stage, bytes and outcome, starts
// pending items up to the plan's concurrency in strict tier order, carries out pause,
// cancel and halt-on-failure, and ends the plan when nothing is left to do.
type Runner struct {
	Store    *store.Store
	Queue    *queue.Client
	Log      *slog.Logger
	Interval time.Duration
	// WebHooks posts plans' web hooks.
	WebHooks *webhook.Client
	// ReportRetention is how long the run report stored when a plan ends is kept
	// (DefaultReportRetention when 0).
	ReportRetention time.Duration

	mu      sync.Mutex
	listing map[string][]store.PlanItem // plan → items (immutable), for tiers and sizes
}

// lockTTL bounds how long a dead worker keeps a plan; a live one renews it every tick.
const lockTTL = 15 * time.Second

// sampleEvery is how often bytes done are sampled for throughput and ETA.
const sampleEvery = 5 * time.Second

// Run ticks every active plan until ctx ends: every Interval, at once when a plan is
// accepted, resumed or has items retried (ChannelPlanWake), and at once when any job ends
// (so the next items start without waiting for the next interval).
func (r *Runner) Run(ctx context.Context) {
	interval := r.Interval
	if interval <= 0 {
		interval = time.Second
	}
	token := zstack.NewUUID()
	events := r.Store.SubscribePlanEvents(ctx)
	for {
		plans, err := r.Store.ActivePlans(ctx)
		if err != nil && ctx.Err() == nil {
			r.Log.Warn("cannot list active plans", "err", err)
		}
		for _, p := range plans {
			if err := r.tick(ctx, p, token); err != nil && ctx.Err() == nil {
				r.Log.Warn("plan tick failed; it will be retried", "plan", p, "err", err)
			}
		}
		timer := time.NewTimer(interval)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
				break wait
			case ch := <-events:
				// A job's end matters only while a plan is active (a plan accepted meanwhile
				// wakes the runner with its own event).
				if ch == store.ChannelJobDone && len(plans) == 0 && err == nil {
					continue
				}
				// One tick for every event of the moment: the next item starts at once, as
				// the slot its predecessor freed would otherwise idle.
				for len(events) > 0 {
					<-events
				}
				timer.Stop()
				break wait
			}
		}
	}
}

// JobUUID is the job that runs an item's attempt: derived, so that a tick interrupted after
// creating a job finds it again instead of creating a second one.
func JobUUID(plan string, index, attempt int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s:%d:%d", plan, index, attempt)))
	return hex.EncodeToString(sum[:16])
}

func (r *Runner) items(ctx context.Context, plan string) ([]store.PlanItem, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listing == nil {
		r.listing = map[string][]store.PlanItem{}
	}
	if it, ok := r.listing[plan]; ok {
		return it, nil
	}
	it, err := r.Store.PlanIndex(ctx, plan)
	if err != nil {
		return nil, err
	}
	r.listing[plan] = it
	return it, nil
}

func (r *Runner) forget(plan string) {
	r.mu.Lock()
	delete(r.listing, plan)
	r.mu.Unlock()
}

// Tick drives one plan once (tests call it directly).
func (r *Runner) Tick(ctx context.Context, plan string) error {
	return r.tick(ctx, plan, zstack.NewUUID())
}

func (r *Runner) tick(ctx context.Context, plan, token string) error {
	ok, err := r.Store.LockPlan(ctx, plan, token, lockTTL)
	if err != nil || !ok {
		return err
	}
	defer r.Store.UnlockPlan(context.WithoutCancel(ctx), plan, token)

	meta, st, err := r.Store.GetPlan(ctx, plan)
	if errors.Is(err, store.ErrNotFound) {
		return r.Store.SetPlanState(ctx, plan, store.PlanCancelled, "plan record missing")
	}
	if err != nil {
		return err
	}
	if store.PlanEnded(st.State) {
		r.forget(plan)
		return r.Store.SetPlanState(ctx, plan, st.State, st.Reason) // drops it from the active set
	}
	items, err := r.items(ctx, plan)
	if err != nil {
		return err
	}
	change := store.NewPlanChange(plan)

	// 1. Running items: follow their jobs.
	running, err := r.Store.PlanRunningItems(ctx, plan)
	if err != nil {
		return err
	}
	statuses, err := r.Store.PlanStatusesOf(ctx, plan, running)
	if err != nil {
		return err
	}
	jobs := make([]string, len(running))
	for i, idx := range running {
		jobs[i] = statuses[idx].Job
	}
	progress, err := r.Store.JobsProgress(ctx, jobs)
	if err != nil {
		return err
	}
	var still, gating []int // running items; those that hold later tiers back
	afterRunning := nextTierAfterRunning(meta)
	failedNow := 0
	now := time.Now().UnixMilli()
	for i, idx := range running {
		old, jp := statuses[idx], progress[i]
		cur := old
		cur.Stage, cur.VM = jp.Stage, jp.VM
		switch {
		case jp.State == "":
			cur.State, cur.FinishedAt = store.ItemFailed, now
			cur.Code, cur.Details = zstack.CodeInternal, "the item's job record is gone (expired or deleted); retry the item"
		case jp.State.Terminal():
			cur.State, cur.FinishedAt = string(jp.State), now
			if jp.State == job.Succeeded {
				cur.BytesDone, cur.DataDone = items[idx].BytesTotal, items[idx].DataTotal
			}
			if jp.Error != "" {
				var ec zstack.ErrorCode
				if json.Unmarshal([]byte(jp.Error), &ec) == nil {
					root := ec.Root()
					cur.Code, cur.Details = root.Code, root.Details
				}
			}
		default:
			// Data read goes a little past the declared data where reads round up to the copy's
			// 64 KiB grid: an item shows at most its total until it ends.
			cur.BytesDone = max(min(jp.BytesDone, items[idx].BytesTotal), old.BytesDone)
			cur.DataDone = max(min(jp.DataBytes, items[idx].DataTotal), old.DataDone)
			still = append(still, idx)
			if !(afterRunning && jp.VMRunning) {
				gating = append(gating, idx)
			}
		}
		if cur.State == store.ItemFailed {
			failedNow++
		}
		if cur != old {
			change.Item(idx, old, cur)
			statuses[idx] = cur // what a cancel below changes from
		}
	}

	state := st.State
	switch {
	case state == store.PlanCancelling:
		if err := r.cancel(ctx, plan, still, statuses, change); err != nil {
			return err
		}
	case state == store.PlanRunning && meta.HaltOnFailure && failedNow > 0:
		state = store.PlanPaused
		if err := r.Store.SetPlanState(ctx, plan, state, fmt.Sprintf("halted: %d item(s) failed and haltOnFailure is set; retry them or resume", failedNow)); err != nil {
			return err
		}
	case state == store.PlanRunning:
		held, err := r.start(ctx, plan, meta, items, still, gating, st.Counts[store.ItemFailed]+failedNow, change)
		if err != nil {
			return err
		}
		if held != "" {
			state = store.PlanPaused
			if err := r.Store.SetPlanState(ctx, plan, state, held); err != nil {
				return err
			}
		}
	}
	if err := r.Store.ApplyPlanChange(ctx, change); err != nil {
		return err
	}
	return r.finishIfDone(ctx, plan, meta, state)
}

// start launches pending items: at most concurrency running (still), and never an item of a
// later tier while an earlier tier still has gating items (running ones, except instant
// items whose VM runs when the plan's nextTierAfter is running). In a plan whose VMs must pass a boot
// check, a tier does not start while an earlier item failed: held says why, and the plan
// pauses until the failed items are retried.
func (r *Runner) start(ctx context.Context, plan string, meta *store.PlanMeta, items []store.PlanItem, still, gating []int, failed int, change *store.PlanChange) (held string, err error) {
	slots := meta.Concurrency - len(still)
	if slots <= 0 {
		return "", nil
	}
	minTier := 0
	for _, idx := range gating {
		if minTier == 0 || items[idx].Tier < minTier {
			minTier = items[idx].Tier
		}
	}
	head, _, err := r.Store.PlanQueueHead(ctx, plan, slots)
	if err != nil {
		return "", err
	}
	if len(head) > 0 && minTier == 0 && failed > 0 && bootChecked(meta) {
		return fmt.Sprintf("held before tier %d: %d item(s) failed, and this plan's VMs must pass their boot check before later ones start; "+
			"retry the failed items (their VMs were removed), then resume", head[0].Tier, failed), nil
	}
	var take []int
	for _, q := range head {
		if minTier != 0 && q.Tier > minTier {
			break // strict tiers: a later tier waits for every running item of earlier ones
		}
		if minTier == 0 {
			minTier = q.Tier
		}
		take = append(take, q.Index)
	}
	if len(take) == 0 {
		return "", nil
	}
	reqs, err := r.Store.PlanRequests(ctx, plan, take)
	if err != nil {
		return "", err
	}
	prev, err := r.Store.PlanStatusesOf(ctx, plan, take)
	if err != nil {
		return "", err
	}
	now := time.Now()
	for _, idx := range take {
		attempt := prev[idx].Attempt + 1
		id := JobUUID(plan, idx, attempt)
		rec := &job.Record{UUID: id, AccountUUID: meta.AccountUUID, Request: reqs[idx], CreatedAt: now,
			Timeout: job.DefaultTimeout, Plan: plan, PlanItem: idx}
		if err := r.Store.CreateJob(ctx, rec); err != nil && !errors.Is(err, store.ErrJobExists) {
			return "", err
		}
		if err := r.Queue.EnqueueRestore(ctx, id, rec.Deadline()); err != nil && !errors.Is(err, queue.ErrDuplicate) {
			return "", err
		}
		change.Item(idx, prev[idx], store.ItemStatus{State: store.ItemRunning, Job: id, Attempt: attempt, StartedAt: now.UnixMilli()})
	}
	change.Popped(len(take))
	return "", nil
}

// nextTierAfterRunning reports whether the plan's instant items let the next tier start as
// soon as their VMs run (nextTierAfter: running, the default).
func nextTierAfterRunning(meta *store.PlanMeta) bool {
	var spec apiv1.PlanSpec
	return json.Unmarshal(meta.Spec, &spec) == nil && spec.NextTierAfter != apiv1.NextTierAfterHydrated
}

// bootChecked reports whether the plan's VMs must pass a boot check (its spec says so).
func bootChecked(meta *store.PlanMeta) bool {
	var spec apiv1.PlanSpec
	return json.Unmarshal(meta.Spec, &spec) == nil && spec.HasBootCheck()
}

// cancel stops a plan: pending items never start, running ones are asked to cancel (once),
// and their jobs compensate; the plan ends when none is left running.
func (r *Runner) cancel(ctx context.Context, plan string, still []int, statuses map[int]store.ItemStatus, change *store.PlanChange) error {
	head, pending, err := r.Store.PlanQueueHead(ctx, plan, -1)
	if err != nil {
		return err
	}
	if pending > 0 {
		prev, err := r.Store.PlanStatusesOf(ctx, plan, indices(head))
		if err != nil {
			return err
		}
		now := time.Now().UnixMilli()
		for _, q := range head {
			p := prev[q.Index]
			change.Item(q.Index, p, store.ItemStatus{State: store.ItemCancelled, Attempt: p.Attempt, FinishedAt: now,
				Code: zstack.CodeCancelled, Details: "the plan was cancelled before this item started"})
		}
		change.Popped(len(head))
	}
	for _, idx := range still {
		st := statuses[idx]
		if st.CancelSent {
			continue
		}
		if _, err := r.Store.RequestCancel(ctx, st.Job); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		old := st
		st.CancelSent = true
		change.Item(idx, old, st)
	}
	return nil
}

func indices(q []store.QueuedItem) []int {
	out := make([]int, len(q))
	for i, x := range q {
		out[i] = x.Index
	}
	return out
}

// finishIfDone ends a plan with nothing pending or running, records a progress sample, and
// queues the plan's web hook.
func (r *Runner) finishIfDone(ctx context.Context, plan string, meta *store.PlanMeta, state string) error {
	_, st, err := r.Store.GetPlan(ctx, plan)
	if err != nil {
		return err
	}
	samples, err := r.Store.PlanSamples(ctx, plan)
	if err != nil {
		return err
	}
	if len(samples) == 0 || time.Since(samples[0].At) >= sampleEvery {
		if err := r.Store.AddPlanSample(ctx, plan, time.Now(), st.DataDone); err != nil {
			return err
		}
	}
	if st.Counts[store.ItemPending] > 0 || st.Counts[store.ItemRunning] > 0 {
		return nil
	}
	final := store.PlanSucceeded
	switch {
	case state == store.PlanCancelling:
		final = store.PlanCancelled
	case st.Counts[store.ItemFailed] > 0 || st.Counts[store.ItemCancelled] > 0:
		final = store.PlanFailed
	}
	reason := fmt.Sprintf("%d of %d items restored", st.Counts[store.ItemSucceeded], meta.ItemCount)
	if err := r.Store.SetPlanState(ctx, plan, final, reason); err != nil {
		return err
	}
	r.forget(plan)
	r.saveReport(ctx, plan)
	r.Log.Info("plan ended", "plan", plan, "name", meta.Name, "state", final, "succeeded", st.Counts[store.ItemSucceeded],
		"failed", st.Counts[store.ItemFailed], "cancelled", st.Counts[store.ItemCancelled])
	if meta.WebHook != "" && r.Queue != nil {
		return r.Queue.EnqueuePlanWebHook(ctx, plan)
	}
	return nil
}

// saveReport stores the run report of a plan that has just ended. A failure is logged, not
// returned: the plan has ended, and its report can still be read live until its jobs expire.
func (r *Runner) saveReport(ctx context.Context, plan string) {
	if _, err := SaveRunReport(ctx, r.Store, plan, r.ReportRetention); err != nil {
		r.Log.Warn("cannot store the plan's run report; GET /api/v1/plans/{uuid}/report builds it from the jobs until they expire", "plan", plan, "err", err)
	}
}
