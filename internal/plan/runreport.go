package plan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/planspec"
	"github.com/vmrestore/vmrestore/internal/store"
)

// DefaultReportRetention is how long run reports are kept (VMRESTORE_REPORT_RETENTION).
const DefaultReportRetention = 400 * 24 * time.Hour

// RunReport builds a plan's run report from the plan, its items and their jobs: while the
// plan runs it is the report so far; when it ends the runner stores it (SaveRunReport), as
// the jobs it reads expire some hours after they end.
func RunReport(ctx context.Context, st *store.Store, uuid string) (*apiv1.RunReport, error) {
	meta, ps, err := st.GetPlan(ctx, uuid)
	if err != nil {
		return nil, err
	}
	listing, err := st.PlanIndex(ctx, uuid)
	if err != nil {
		return nil, err
	}
	statuses, err := st.PlanStatuses(ctx, uuid)
	if err != nil {
		return nil, err
	}
	r := &apiv1.RunReport{PlanUUID: meta.UUID, PlanName: meta.Name, Mode: meta.Mode, State: ps.State, Reason: ps.Reason,
		StartedByAccountUUID: meta.AccountUUID, SubmittedAt: meta.CreatedAt, GeneratedAt: time.Now(), ItemCount: meta.ItemCount,
		Counts: ps.Counts, VMs: make([]apiv1.RunReportVM, 0, len(listing))}
	if r.Mode == "" {
		r.Mode = apiv1.ModeRecovery
	}
	if !ps.FinishedAt.IsZero() {
		f := ps.FinishedAt
		r.FinishedAt = &f
	}
	r.StartedBy = accountName(ctx, st, meta.AccountUUID)
	var spec apiv1.PlanSpec
	if json.Unmarshal(meta.Spec, &spec) == nil && spec.IsDrill() {
		if ix, err := st.LoadCatalog(ctx); err == nil {
			r.TestNetworks = planspec.TestNetworks(&spec, ix)
		}
	}
	var jobUUIDs []string
	for _, it := range listing {
		if j := statuses[it.Index].Job; j != "" {
			jobUUIDs = append(jobUUIDs, j)
		}
	}
	jobs, err := st.GetJobs(ctx, jobUUIDs)
	if err != nil {
		return nil, fmt.Errorf("the jobs of plan %s: %w", uuid, err)
	}
	for _, it := range listing {
		r.VMs = append(r.VMs, reportVM(meta.CreatedAt, it, statuses[it.Index], jobs))
	}
	r.Tiers = tierOutcomes(r.VMs)
	for _, t := range r.Tiers {
		r.DataBytes += t.DataBytes
	}
	r.RTOSeconds = latestRTO(r.VMs)
	return r, nil
}

// accountName is the name of an account, or its uuid when it is gone.
func accountName(ctx context.Context, st *store.Store, uuid string) string {
	accounts, err := st.ListAccounts(context.WithoutCancel(ctx))
	if err == nil {
		for _, a := range accounts {
			if a.UUID == uuid {
				return a.Name
			}
		}
	}
	return uuid
}

// reportVM is one item's line: its status, and the timings of its last attempt's job (when
// the job has not expired: jobs holds those that have not).
func reportVM(submitted time.Time, it store.PlanItem, s store.ItemStatus, jobs map[string]*job.Record) apiv1.RunReportVM {
	if s.State == "" {
		s.State = store.ItemPending
	}
	vm := apiv1.RunReportVM{Index: it.Index, Tier: it.Tier, Name: it.Name, GroupUUID: it.GroupUUID, VMUUID: s.VM, JobUUID: s.Job,
		State: s.State, Attempts: s.Attempt, DataBytes: s.DataDone, VirtualBytes: s.BytesDone, ErrorCode: s.Code, Error: s.Details}
	if s.State == store.ItemSucceeded {
		vm.DataBytes, vm.VirtualBytes = it.DataTotal, it.BytesTotal
	}
	vm.StartedAt, vm.FinishedAt = millisPtr(s.StartedAt), millisPtr(s.FinishedAt)
	rec, ok := jobs[s.Job]
	if s.Job == "" || !ok {
		return vm // no job yet, or expired: the plan's own timings stand
	}
	fillFromJob(&vm, rec)
	if s.State == store.ItemSucceeded && vm.FinishedAt != nil {
		rto := vm.FinishedAt.Sub(submitted).Seconds()
		vm.RTOSeconds = &rto
	}
	return vm
}

// fillFromJob takes a VM's times, host, boot check and stage timings from its job.
func fillFromJob(vm *apiv1.RunReportVM, rec *job.Record) {
	vm.QueuedAt = timePtr(rec.CreatedAt)
	if !rec.StartedAt.IsZero() {
		vm.StartedAt = timePtr(rec.StartedAt)
	}
	if !rec.FinishedAt.IsZero() {
		vm.FinishedAt = timePtr(rec.FinishedAt)
	}
	if rec.VMUUID != "" {
		vm.VMUUID = rec.VMUUID
	}
	if p := rec.Checkpoints.Placement; p != nil {
		vm.HostUUID = p.HostUUID
	}
	if rec.Request != nil && rec.Request.BootCheck != nil {
		vm.BootCheck = rec.Request.BootCheck.Spec()
		switch {
		case rec.Checkpoints.Instance != nil && rec.Checkpoints.Instance.BootCheck != "":
			vm.BootCheckResult = "passed: " + rec.Checkpoints.Instance.BootCheck
		case rec.State == job.Failed && rec.Error != nil && rec.Stage == job.StageInstantiate:
			vm.BootCheckResult = "failed: " + rec.Error.Root().Details
		}
	}
	vm.Stages = stageTimings(rec)
}

// stageTimings are the stages of a job's last run, each from the end of the one before (the
// first from the job's start) to its own end; the commit stage ends with the job.
func stageTimings(rec *job.Record) []apiv1.RunReportStage {
	if rec.StartedAt.IsZero() {
		return nil
	}
	var out []apiv1.RunReportStage
	from := rec.StartedAt
	for _, stage := range job.Stages {
		if stage == job.StageHydrate && (rec.Request == nil || !rec.Request.Instant) {
			continue // only an instant restore hydrates; the others pass the stage at once
		}
		end, ok := rec.StageEnded[stage]
		if stage == job.StageCommit && rec.State == job.Succeeded {
			end, ok = rec.FinishedAt, true
		}
		if !ok || end.IsZero() {
			continue
		}
		if end.Before(from) { // a stage kept from an earlier attempt
			from = end
		}
		out = append(out, apiv1.RunReportStage{Stage: stage, StartedAt: from, Seconds: end.Sub(from).Seconds()})
		from = end
	}
	return out
}

// tierOutcomes sums the VMs by tier: counts, data, first start, last end and RTO.
func tierOutcomes(vms []apiv1.RunReportVM) []apiv1.RunReportTier {
	byTier := map[int]*apiv1.RunReportTier{}
	rtos := map[int][]apiv1.RunReportVM{}
	for _, vm := range vms {
		t := byTier[vm.Tier]
		if t == nil {
			t = &apiv1.RunReportTier{Tier: vm.Tier, Counts: map[string]int{}}
			byTier[vm.Tier] = t
		}
		t.ItemCount++
		t.Counts[vm.State]++
		t.DataBytes += vm.DataBytes
		if vm.StartedAt != nil && (t.StartedAt == nil || vm.StartedAt.Before(*t.StartedAt)) {
			t.StartedAt = vm.StartedAt
		}
		if vm.FinishedAt != nil && (t.EndedAt == nil || vm.FinishedAt.After(*t.EndedAt)) {
			t.EndedAt = vm.FinishedAt
		}
		rtos[vm.Tier] = append(rtos[vm.Tier], vm)
	}
	out := make([]apiv1.RunReportTier, 0, len(byTier))
	for tier, t := range byTier {
		t.Complete = t.Counts[store.ItemSucceeded] == t.ItemCount
		t.RTOSeconds = latestRTO(rtos[tier])
		out = append(out, *t)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Tier < out[b].Tier })
	return out
}

// latestRTO is the largest RTO of the VMs restored, or nil when none was.
func latestRTO(vms []apiv1.RunReportVM) *float64 {
	var rto *float64
	for _, vm := range vms {
		if vm.RTOSeconds != nil && (rto == nil || *vm.RTOSeconds > *rto) {
			v := *vm.RTOSeconds
			rto = &v
		}
	}
	return rto
}

// retentionOr is retention, or the default when it is not set.
func retentionOr(retention time.Duration) time.Duration {
	if retention <= 0 {
		return DefaultReportRetention
	}
	return retention
}

// SaveRunReport builds a plan's report and stores it for retention (the default when 0).
func SaveRunReport(ctx context.Context, st *store.Store, uuid string, retention time.Duration) (*apiv1.RunReport, error) {
	r, err := RunReport(ctx, st, uuid)
	if err != nil {
		return nil, err
	}
	if err := addCleanup(ctx, st, r); err != nil {
		return nil, err
	}
	return r, saveReport(ctx, st, r, retention)
}

func saveReport(ctx context.Context, st *store.Store, r *apiv1.RunReport, retention time.Duration) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	summary, err := json.Marshal(r.Summary())
	if err != nil {
		return err
	}
	end := r.GeneratedAt
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	return st.SaveReport(ctx, store.StoredReport{Plan: r.PlanUUID, Account: r.StartedByAccountUUID, FinishedAt: end, Summary: summary, Body: body}, retentionOr(retention))
}

// addCleanup puts the plan's last cleanup, if it had one, in its report.
func addCleanup(ctx context.Context, st *store.Store, r *apiv1.RunReport) error {
	var c apiv1.PlanCleanup
	found, err := st.GetPlanCleanup(ctx, r.PlanUUID, &c)
	if err != nil || !found {
		return err
	}
	r.Cleanup = &c
	return nil
}

// StoredOrLiveReport is the stored report of a plan, else the report so far (a plan that
// has not ended, or ended before reports were stored), with the plan's last cleanup. A
// stored report that lacks a cleanup that has since ended is stored again with it, so that
// what the cleanup freed is kept with the report.
func StoredOrLiveReport(ctx context.Context, st *store.Store, uuid string, retention time.Duration) (*apiv1.RunReport, error) {
	r, err := storedReport(ctx, st, uuid, retention)
	if !errors.Is(err, store.ErrNotFound) {
		return r, err
	}
	r, err = RunReport(ctx, st, uuid)
	if err != nil {
		return nil, err
	}
	return r, addCleanup(ctx, st, r)
}

// RecordCleanup stores a plan's report again with its cleanup, once the cleanup has ended
// (the cleanup task calls it as it ends, so that the stored report shows what was freed at
// once, not only when it is next read). An ended plan whose report is not stored yet gets
// it now; a plan still running (its cleanup gave up waiting for it) gets it when it ends.
func RecordCleanup(ctx context.Context, st *store.Store, uuid string, retention time.Duration) error {
	_, err := storedReport(ctx, st, uuid, retention)
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	_, ps, err := st.GetPlan(ctx, uuid)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the plan itself is gone: no report to keep
	}
	if err != nil || !store.PlanEnded(ps.State) {
		return err
	}
	_, err = SaveRunReport(ctx, st, uuid, retention)
	return err
}

// storedReport reads the stored report of a plan with the plan's last cleanup, and stores it
// again when that cleanup has ended since it was stored; ErrNotFound when none is stored.
func storedReport(ctx context.Context, st *store.Store, uuid string, retention time.Duration) (*apiv1.RunReport, error) {
	body, err := st.GetReport(ctx, uuid)
	if err != nil {
		return nil, err
	}
	var r apiv1.RunReport
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode the report of plan %s: %w", uuid, err)
	}
	kept := r.Cleanup
	if err := addCleanup(ctx, st, &r); err != nil {
		return nil, err
	}
	if c := r.Cleanup; c != nil && c.State != apiv1.CleanupRunning && (kept == nil || kept.UUID != c.UUID || kept.State != c.State) {
		if err := saveReport(context.WithoutCancel(ctx), st, &r, retention); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// Reports lists the stored reports of an account (all with account empty), newest first,
// dropping those older than retention (the default when 0).
func Reports(ctx context.Context, st *store.Store, account string, retention time.Duration) ([]apiv1.RunReportSummary, error) {
	retention = retentionOr(retention)
	raw, err := st.ListReports(ctx, account, retention)
	if err != nil {
		return nil, err
	}
	out := make([]apiv1.RunReportSummary, 0, len(raw))
	for _, b := range raw {
		var s apiv1.RunReportSummary
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("decode a report summary: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

func millisPtr(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	return timePtr(time.UnixMilli(ms))
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
