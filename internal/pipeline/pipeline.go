// Package pipeline runs a restore job: resolve → place → network → clone → instantiate →
// commit. It is the worker's asynq handler.
//
// Safety under asynq's at-least-once delivery:
//   - a job runs on one worker at a time (a Redis lock, renewed while it runs);
//   - every stage records a checkpoint and a re-run skips finished stages; every side effect
//     is keyed on the job (capacity reservation, IP and MAC owners, install paths), so a
//     stage interrupted half-way finds and reuses what it already did;
//   - a failure that will not be retried (invalid request, no capacity, checksum mismatch,
//     cancel, timeout, retries exhausted) compensates in reverse — volume files, addresses,
//     capacity, VM record — before the job is failed with a ZStack ErrorCode;
//   - a worker that stops (shutdown, lost lease) leaves the job as it is for the next run.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/webhook"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Pipeline executes restore jobs.
type Pipeline struct {
	Store      *store.Store
	Catalog    *store.CatalogCache
	Events     *store.Events
	Hypervisor hypervisor.Driver
	Queue      *queue.Client // for web hooks
	WebHooks   *webhook.Client
	Metrics    *metrics.Metrics
	Log        *slog.Logger
	// CloneParallelism is how many volumes of one VM are copied at once.
	CloneParallelism int
	// HostLocal decides which jobs run their clone and instantiate on their host's worker.
	HostLocal HostLocal
	// CloneCheckpointEvery is how many bytes of a volume a copy moves between two
	// checkpoints it can resume from (0: copies are not resumable).
	CloneCheckpointEvery int64
	// Groups keeps the groups restores read (nil: each restore parses group.json anew).
	Groups *backup.GroupCache
}

// The job lock: lockTTL bounds how long a dead worker's lock outlives it (the take-over then
// finds it, see TakeOver); it is renewed every lockRenew, and every lockRetry while Redis does
// not answer. A run that could not renew its lock for lockFence stops (its lock may have
// lapsed and been claimed by a take-over elsewhere), so two workers never copy the same
// volume; it hands the job back to come back from its last checkpoint.
const (
	lockTTL   = 8 * time.Second
	lockRenew = 2 * time.Second
	lockRetry = 250 * time.Millisecond
	lockFence = lockTTL - time.Second
)

// Reasons a job's context ends, told apart with context.Cause.
var (
	errCancelled = errors.New("cancelled by request")
	errTimedOut  = errors.New("job timeout reached")
	errLockLost  = errors.New("job lock lost")
)

// Handle is the asynq handler for restore tasks.
func (p *Pipeline) Handle(ctx context.Context, t *asynq.Task) (err error) {
	jobUUID := string(t.Payload())
	if !zstack.IsUUID(jobUUID) {
		return fmt.Errorf("restore task with payload %q is not a job uuid: %w", jobUUID, asynq.SkipRetry)
	}
	log := p.Log.With("job", jobUUID)
	p = p.forJob(log) // every line this job's stages log carries its uuid

	token := zstack.NewUUID()
	// A take-over's task runs under its own id, which the take-over's claim on the lock names.
	claim := ""
	if id, ok := asynq.GetTaskID(ctx); ok && id != jobUUID {
		claim = TakeOverClaim(id)
	}
	ok, err := p.Store.LockJob(ctx, jobUUID, token, lockTTL, claim)
	if err != nil {
		if ok {
			p.Store.UnlockJob(context.WithoutCancel(ctx), jobUUID, token)
		}
		err, _ = p.outage(ctx, log, err)
		return err
	}
	if !ok {
		p.Metrics.JobHandBacks.WithLabelValues(metrics.HandBackRunningElsewhere).Inc()
		return fmt.Errorf("job %s: %w", jobUUID, queue.ErrElsewhere)
	}
	started := false // an attempt started: a hand-back is recorded in the job
	defer func() {
		// After an outage, wait for Redis first, or the unlock would fail too and the
		// job would wait out the lock's TTL.
		var reachable bool
		err, reachable = p.outage(ctx, log, err)
		if started && reachable && errors.Is(err, queue.ErrBusy) {
			p.handBack(context.WithoutCancel(ctx), jobUUID, metrics.HandBackRedisUnreachable)
		}
		p.Store.UnlockJob(context.WithoutCancel(ctx), jobUUID, token)
	}()

	work, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go p.keepLock(work, stop, jobUUID, token)

	// Watch for a cancel before reading the record, whose flag covers an earlier one.
	cancelled, unwatch := p.Events.WatchCancel(jobUUID)
	defer unwatch()
	queueName, _ := asynq.GetQueueName(ctx)
	prev, rec, err := p.Store.StartAttempt(ctx, jobUUID, queueName)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("restore task for a job that no longer exists (expired or deleted); dropping it")
		p.Store.UnlistJobLock(context.WithoutCancel(ctx), jobUUID)
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Request == nil {
		return fmt.Errorf("job %s is no restore (operation %v): %w", jobUUID, rec.Op, asynq.SkipRetry)
	}
	started = !prev.Terminal()
	if rec.NewAttempt && rec.Attempts > 1 {
		p.Metrics.JobReattempts.Inc()
	}
	if prev.Terminal() {
		// It ended before its task was marked done (a crash in between): make sure the
		// web hook is on its way, nothing else is left to do.
		return p.notify(ctx, rec)
	}
	run, cancelDeadline := jobContext(work, stop, cancelled, rec)
	defer cancelDeadline()

	err = p.run(run, rec)
	if err == nil || errors.Is(err, errHandedOver) {
		return nil
	}
	cause := context.Cause(run)
	switch {
	case errors.Is(cause, errCancelled):
		return p.fail(ctx, rec, job.Cancelled, zstack.Errorf(zstack.CodeCancelled,
			"the restore of group[uuid:%s] was cancelled during its %s stage; everything it had allocated was released", rec.Request.GroupUUID, rec.Stage))
	case errors.Is(cause, errTimedOut):
		return p.fail(ctx, rec, job.Failed, zstack.Errorf(zstack.CodeTimeout,
			"the restore of group[uuid:%s] did not finish in time, it was in its %s stage: timeout after %ds", rec.Request.GroupUUID, rec.Stage, int(rec.Timeout/time.Second)))
	case ctx.Err() != nil:
		// The worker stops (its Shutdown cancelled the handler): the job goes back to the
		// queue and resumes from its last checkpoint elsewhere, as the same attempt.
		log.Warn("restore interrupted by the worker stopping; it will resume from its last checkpoint", "stage", rec.Stage, "err", err)
		p.handBack(context.WithoutCancel(ctx), jobUUID, metrics.HandBackShutdown)
		return fmt.Errorf("restore interrupted in %s: %w", rec.Stage, err)
	case errors.Is(cause, errLockLost):
		// Another worker may run it now, or Redis was away longer than the lock lasts: the
		// job comes back and finds out, from its last checkpoint.
		log.Warn("restore interrupted: its job lock could not be kept; it resumes from its last checkpoint", "stage", rec.Stage, "err", err)
		return fmt.Errorf("restore interrupted in %s: %w: %w", rec.Stage, errLockLost, queue.ErrBusy)
	}
	if store.Unavailable(err) {
		return err // handed back by the deferred outage, not counted as a failure
	}
	if ec, ok := zstack.AsErrorCode(err); ok {
		return p.fail(ctx, rec, job.Failed, ec)
	}
	if errors.Is(err, queue.ErrBusy) {
		reason := metrics.HandBackContended
		if errors.Is(err, errNoSlot) || errors.Is(err, errSlotLost) {
			reason = metrics.HandBackCloneSlots
		}
		log.Debug("restore yields its worker slot and will come back", "stage", rec.Stage, "reason", err)
		p.handBack(ctx, jobUUID, reason)
		return err
	}
	if queue.RetriesLeft(ctx) {
		log.Warn("restore stage failed; it will be retried", "stage", rec.Stage, "err", err)
		return err
	}
	return p.fail(ctx, rec, job.Failed, zstack.Operation(zstack.Errorf(zstack.CodeInternal,
		"the %s stage kept failing and its retries are exhausted: %v", rec.Stage, err)))
}

// jobContext is the context a job's work runs in: work, stopped (errCancelled) when a
// cancel arrives or was asked before, and ended (errTimedOut) at the job's deadline.
func jobContext(work context.Context, stop context.CancelCauseFunc, cancelled <-chan struct{}, rec *job.Record) (context.Context, context.CancelFunc) {
	go func() {
		select {
		case <-cancelled:
			stop(errCancelled)
		case <-work.Done():
		}
	}()
	if rec.CancelAsked {
		stop(errCancelled)
	}
	return context.WithDeadlineCause(work, rec.Deadline(), errTimedOut)
}

// outageWait bounds how long a handler whose stage lost Redis waits for it to come back.
const outageWait = 30 * time.Second

// outage turns an error that says Redis is unreachable into a busy hand-back, after waiting
// (bounded) for Redis to answer again, and reports whether it answers; other errors pass
// unchanged. Waiting matters: asynq schedules the retry with a Redis write, and when that
// write fails the task is left to asynq's lease recovery, minutes later. An outage is
// nobody's fault, so it does not count against the job's retries; the job resumes from its
// last checkpoint.
func (p *Pipeline) outage(ctx context.Context, log *slog.Logger, err error) (error, bool) {
	if !store.Unavailable(err) || errors.Is(err, queue.ErrBusy) {
		return err, false
	}
	log.Warn("Redis is unreachable; the restore resumes from its last checkpoint when it is back", "err", err)
	reachable := p.Store.WaitReachable(ctx, outageWait)
	if !reachable && ctx.Err() == nil {
		log.Warn("Redis is still unreachable; the job is left to the queue's recovery", "waited", outageWait.String())
	}
	return fmt.Errorf("%w: %w", err, queue.ErrBusy), reachable
}

// handBack records in the job and in metrics that its run gives the worker slot back on
// purpose: the next run continues the attempt.
func (p *Pipeline) handBack(ctx context.Context, jobUUID, reason string) {
	p.Metrics.JobHandBacks.WithLabelValues(reason).Inc()
	if err := p.Store.HandBack(ctx, jobUUID); err != nil {
		p.Log.Debug("hand-back not recorded; the next run counts as a new attempt", "job", jobUUID, "err", err)
	}
}

// keepLock renews the job lock until ctx ends; losing it, or failing to renew it for
// lockFence, stops the work.
func (p *Pipeline) keepLock(ctx context.Context, stop context.CancelCauseFunc, jobUUID, token string) {
	renewed := time.Now() // when the last successful renewal was sent
	wait := lockRenew
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		sent := time.Now()
		ok, err := p.Store.LockJob(ctx, jobUUID, token, lockTTL, "")
		switch {
		case err == nil && ok:
			renewed, wait = sent, lockRenew
		case err == nil && !ok:
			stop(errLockLost)
			return
		case time.Since(renewed) >= lockFence:
			p.Log.Warn("the job lock could not be renewed in time; the restore stops here", "job", jobUUID, "err", err)
			stop(errLockLost)
			return
		default:
			wait = lockRetry
		}
	}
}

// run executes the stages that have not finished yet.
func (p *Pipeline) run(ctx context.Context, rec *job.Record) error {
	ix, err := p.Catalog.AtLeast(ctx, rec.CatalogVersion) // read with the record
	if errors.Is(err, store.ErrNotFound) {
		return zstack.Errorf(zstack.CodeInternal, "no site catalog is loaded; start the api with a site file (VMRESTORE_SITE)")
	}
	if err != nil {
		return err
	}
	for _, stage := range job.Stages {
		// The commit always runs: it ends the job, and a job that is not ended has not
		// committed, whatever checkpoint an earlier version recorded. StartAttempt recorded
		// the first stage to run as current; each checkpoint records the next one.
		if stage != job.StageCommit && rec.Checkpoints.StageDone(stage) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if stage == job.StageClone || stage == job.StageInstantiate && !rec.Checkpoints.StageDone(job.StageClone) {
			if err := p.goHostLocal(ctx, ix, rec); err != nil {
				return err
			}
		}
		rec.Stage = stage
		end := p.Metrics.StartStage(stage, rec.UUID)
		err := p.stage(ctx, ix, rec, stage)
		end()
		if err != nil {
			return err
		}
	}
	p.Metrics.JobEnded(string(job.Succeeded), "", rec.UUID, time.Since(rec.CreatedAt))
	return nil
}

func (p *Pipeline) stage(ctx context.Context, ix *catalog.Index, rec *job.Record, stage string) error {
	switch stage {
	case job.StageResolve:
		return p.resolve(ctx, ix, rec)
	case job.StagePlace:
		return p.place(ctx, ix, rec)
	case job.StageNetwork:
		return p.network(ctx, ix, rec)
	case job.StageClone:
		return p.clone(ctx, ix, rec)
	case job.StageInstantiate:
		return p.instantiate(ctx, ix, rec)
	case job.StageHydrate:
		return p.hydrate(ctx, ix, rec)
	case job.StageCommit:
		return p.commit(ctx, ix, rec)
	}
	return fmt.Errorf("unknown stage %q", stage)
}

// fail compensates and ends the job. The work context is gone by now (cancel, timeout), so
// compensation runs on a fresh one with its own bound.
func (p *Pipeline) fail(parent context.Context, rec *job.Record, state job.State, e *zstack.ErrorCode) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 2*time.Minute)
	defer cancel()
	// A placement whose checkpoint waited for the network stage's is recorded now: the
	// failed job shows where it was placed and in which stage it failed.
	if cps := unsavedPlace(rec); cps != nil {
		if err := p.Store.SaveCheckpoints(ctx, rec.UUID, cps...); err != nil {
			return fmt.Errorf("record the placement of job %s: %w", rec.UUID, err)
		}
		rec.Checkpoints.PlaceEnded = time.Time{}
	}
	if err := p.compensate(ctx, rec); err != nil {
		p.Log.Error("compensation failed; the job will run again to finish it", "job", rec.UUID, "err", err)
		return fmt.Errorf("compensate job %s: %w", rec.UUID, err)
	}
	if _, err := p.Store.FinishJob(ctx, rec.UUID, state, nil, e); err != nil {
		return err
	}
	if err := p.notify(ctx, rec); err != nil {
		return err
	}
	p.Metrics.JobEnded(string(state), e.Root().Code, rec.UUID, time.Since(rec.CreatedAt))
	p.Log.Info("restore ended without a VM", "job", rec.UUID, "state", state, "code", e.Code, "cause", e.Root().Code, "details", e.Root().Details)
	return fmt.Errorf("%s: %w", e.Error(), asynq.SkipRetry)
}

// compensate undoes, in reverse order, whatever the job's checkpoints say it did (see
// release). Every step is idempotent, so a compensation interrupted half-way can simply run
// again.
func (p *Pipeline) compensate(ctx context.Context, rec *job.Record) error {
	// Reload: the in-memory checkpoints may lag what a stage recorded just before failing.
	fresh, err := p.Store.GetJob(ctx, rec.UUID)
	if err != nil {
		return err
	}
	return p.release(ctx, fresh)
}

// release gives back everything a restore job took, as its checkpoints (or, for a VM being
// expunged, its inventory: see footprint) describe it: the hypervisor's domain, volume
// files, addresses and MACs, capacity, then the VM record and the uuid claims. It is the
// one release path of the failed restore and of the expunged VM. It only ever removes what
// this job created: the VM record and the domain only when the VM's uuid is this job's (its
// claim), files, addresses and capacity by this job's keys, the claims this job holds. The
// VM record goes after everything else, and only when all else was released, so that an
// expunge interrupted half-way finds its VM again and finishes.
func (p *Pipeline) release(ctx context.Context, fresh *job.Record) error {
	cp := fresh.Checkpoints
	var errs []error
	mine, domainLeft := false, false
	if r := cp.Resolved; r != nil {
		holder, err := p.Store.ResourceHolder(ctx, r.VMUUID)
		switch {
		case err != nil:
			errs = append(errs, err)
		case holder == fresh.UUID:
			mine = true
			if err := p.destroyDomain(ctx, fresh); err != nil {
				errs = append(errs, err)
				domainLeft = true
			}
		default:
			p.Log.Warn("release leaves the VM alone: this job does not hold its uuid", "job", fresh.UUID, "vm", r.VMUUID, "holder", holder)
		}
		if err := p.removeVolumes(ctx, fresh); err != nil {
			errs = append(errs, err)
		}
		if err := p.releaseNetwork(ctx, fresh); err != nil {
			errs = append(errs, err)
		}
	}
	// An instant restore's VM may still run from its backups while its domain could not be
	// stopped: their marks stay until a re-run of the release stops it.
	if instant(fresh) && !domainLeft {
		if ix, err := p.Catalog.Current(ctx); err != nil {
			errs = append(errs, err)
		} else if err := p.unmarkBacking(ctx, ix, fresh); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := p.Store.Release(ctx, fresh.UUID); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if mine {
		if err := p.Store.DeleteVM(ctx, fresh.UUID, cp.Resolved.VMUUID); err != nil {
			return err
		}
	}
	binding := store.ResourceBinding{JobUUID: fresh.UUID}
	for _, uuid := range []string{fresh.GeneratedVMUUID, requestedUUID(fresh)} {
		if uuid == "" {
			continue
		}
		if err := p.Store.ReleaseResource(ctx, uuid, binding); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// requestedUUID is the resourceUuid a job's request names, if any.
func requestedUUID(rec *job.Record) string {
	if rec.Request == nil {
		return ""
	}
	return rec.Request.ResourceUUID
}
