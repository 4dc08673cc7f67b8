package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// TakeOver resumes the jobs of workers that died, within seconds: asynq alone hands a dead
// worker's task to another only when its lease (30 s) has run out and its recoverer comes by
// (every minute). Every worker runs one. It looks every TakeOverScan at the jobs whose lock
// lapsed without being released (a worker that stops releases its locks): a lock seen lapsed
// on two looks TakeOverConfirm apart, and still not held, is claimed, and a run of the job is
// queued under a task id the claim names (a take-over task). Its run takes the lock from the
// claim and resumes the job from its last checkpoint (a copy from its last copy checkpoint).
//
// Never on two workers at once: the claim is an atomic take of the free lock, and a worker
// that could not renew its lock stops its work before the lock lapses (lockFence). After a
// Redis outage longer than a lock lasts, every lock has lapsed: their holders renew them at
// once when Redis is back, and the second look finds them held. When asynq recovers the dead
// worker's task later, its run finds the job running here (it looks again every
// queue.TakenOverDelay) or ended, and does nothing.
type TakeOver struct {
	Store   *store.Store
	Queue   *queue.Client
	Metrics *metrics.Metrics
	Log     *slog.Logger

	seen map[string]time.Time // lapsed locks → first seen lapsed
}

// Take-over timing: a dead worker's job runs again at most lockTTL + TakeOverConfirm +
// TakeOverScan after the worker died, plus the queue's pick-up.
const (
	TakeOverScan    = time.Second
	TakeOverConfirm = 1500 * time.Millisecond
	// takeOverClaimTTL is how long a take-over's claim waits for its run to take the lock.
	takeOverClaimTTL = 30 * time.Second
)

// TakeOverClaim is the value a take-over's claim puts in a job's lock, for its task's run.
func TakeOverClaim(taskID string) string { return "takeover:" + taskID }

// Run looks for lapsed locks every TakeOverScan until ctx ends.
func (t *TakeOver) Run(ctx context.Context) {
	tick := time.NewTicker(TakeOverScan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := t.Scan(ctx); err != nil && ctx.Err() == nil {
			t.Log.Debug("take-over scan failed; next one in a second", "err", err)
		}
	}
}

// Scan looks once; a lapsed lock is claimed on the first look at least TakeOverConfirm after
// the one that first saw it.
func (t *TakeOver) Scan(ctx context.Context) error {
	if t.seen == nil {
		t.seen = map[string]time.Time{}
	}
	jobs, err := t.Store.LapsedJobLocks(ctx, 0)
	if err != nil {
		return err
	}
	now := time.Now()
	lapsed := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		lapsed[j] = true
		first, ok := t.seen[j]
		if !ok {
			t.seen[j] = now
			continue
		}
		if now.Sub(first) < TakeOverConfirm {
			continue
		}
		delete(t.seen, j)
		if err := t.takeOver(ctx, j); err != nil {
			return err
		}
	}
	for j := range t.seen {
		if !lapsed[j] {
			delete(t.seen, j)
		}
	}
	return nil
}

func (t *TakeOver) takeOver(ctx context.Context, jobUUID string) error {
	rec, err := t.Store.GetJob(ctx, jobUUID)
	if errors.Is(err, store.ErrNotFound) || err == nil && rec.State.Terminal() {
		return t.Store.UnlistJobLock(ctx, jobUUID)
	}
	if err != nil {
		return err
	}
	taskID := jobUUID + "-takeover-" + zstack.NewUUID()[:12]
	ok, err := t.Store.ClaimLapsedJob(ctx, jobUUID, TakeOverClaim(taskID), takeOverClaimTTL)
	if err != nil || !ok {
		return err // held again: its worker is back, or another worker claimed it first
	}
	if err := t.Queue.EnqueueTakeOver(ctx, jobUUID, rec.Queue, taskID, rec.Deadline()); err != nil {
		return err // the claim lapses and the job is claimed again
	}
	t.Metrics.JobTakeOvers.Inc()
	t.Log.Warn("the worker running this job stopped answering (its job lock lapsed); another worker takes it over from its last checkpoint",
		"job", jobUUID, "stage", rec.Stage, "task", taskID)
	return nil
}
