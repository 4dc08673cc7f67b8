// Package queue is vmrestore's use of asynq: the restore task (its TaskID is the job uuid,
// its payload nothing but that uuid, the request lives in the job record), how it is
// enqueued, and how worker servers are configured: retry policy, crash accounting and the
// idle polling interval.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Task types and the queue they share.
const (
	TypeRestore = "vmrestore:restore"
	TypeWebHook = "vmrestore:webhook"
	// TypePlanWebHook posts a finished plan's summary to the plan's web hook.
	TypePlanWebHook = "vmrestore:plan-webhook"
	// TypeVMOperation runs a life-cycle operation (stop, start, destroy, expunge, ...) on a
	// VM; its payload is the operation's job uuid, like a restore's.
	TypeVMOperation = "vmrestore:vm-operation"
	// TypePlanCleanup destroys and expunges every VM a plan created; its payload is the plan.
	TypePlanCleanup = "vmrestore:plan-cleanup"
	QueueRestore    = "restore"
)

// Web hook delivery follows ZStack: up to 15 tries, 2 s apart, until the receiver answers 2xx.
const (
	WebHookTries    = 15
	WebHookInterval = 2 * time.Second
)

// ErrBusy is returned (wrapped) by a handler that cannot go on right now: another worker
// runs the same job, or the job's backup storage has no free clone slot. The task comes back
// shortly, without counting as a failure, and the worker slot serves other jobs meanwhile.
var ErrBusy = errors.New("busy, try again shortly")

// ErrElsewhere is returned (wrapped) by a handler whose job another worker holds: a second
// delivery of its task (asynq's recovery of a dead worker's task after the job was taken
// over), or a task handed back by a stopping worker that has not released the job yet. It
// comes back every TakenOverDelay or so until the job has ended, and then does nothing.
var ErrElsewhere = fmt.Errorf("%w: the job runs on another worker", ErrBusy)

// TakenOverDelay is about how long a task whose job runs elsewhere waits before it looks
// again: short, as a stopping worker releases its jobs within seconds.
const TakenOverDelay = 2 * time.Second

// ErrDuplicate is returned when the job uuid already has a task.
var ErrDuplicate = errors.New("a task with this job uuid exists")

// Client enqueues restore tasks.
type Client struct {
	c        *asynq.Client
	in       *asynq.Inspector
	maxRetry int
}

// NewClient enqueues through rdb. maxRetry bounds retries of transient failures (crashes do
// not count, see IsFailure).
func NewClient(rdb redis.UniversalClient, maxRetry int) *Client {
	return &Client{c: asynq.NewClientFromRedisClient(rdb), in: asynq.NewInspectorFromRedisClient(rdb), maxRetry: maxRetry}
}

// EnqueueRestore queues the restore of a job. deadline is the job's own timeout: the worker
// fails the job with SYS.1001 at that moment; asynq's deadline is set a little later so that it
// only ever fires for a handler that stopped answering.
func (c *Client) EnqueueRestore(ctx context.Context, jobUUID string, deadline time.Time) error {
	return c.enqueueJob(ctx, TypeRestore, "restore", jobUUID, deadline)
}

// EnqueueVMOperation queues a VM operation job, under the job's uuid like a restore.
func (c *Client) EnqueueVMOperation(ctx context.Context, jobUUID string, deadline time.Time) error {
	return c.enqueueJob(ctx, TypeVMOperation, "vm operation", jobUUID, deadline)
}

// enqueueJob queues a job's task under the job's uuid (a second one is ErrDuplicate) on the
// restore queue, with asynq's deadline 2 minutes past the job's own.
func (c *Client) enqueueJob(ctx context.Context, taskType, what, jobUUID string, deadline time.Time) error {
	_, err := c.c.EnqueueContext(ctx, asynq.NewTask(taskType, []byte(jobUUID)),
		asynq.TaskID(jobUUID), asynq.Queue(QueueRestore), asynq.MaxRetry(c.maxRetry),
		asynq.Deadline(deadline.Add(2*time.Minute)))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("enqueue %s %s: %w", what, jobUUID, err)
	}
	return nil
}

// Queued reports whether a job's task is in the restore queue (waiting, running, or to be
// retried); a task that has ended is gone from it.
func (c *Client) Queued(jobUUID string) (bool, error) {
	_, err := c.in.GetTaskInfo(QueueRestore, jobUUID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look for the task of job %s: %w", jobUUID, err)
}

// EnqueuePlanCleanup queues the cleanup of a plan; run is the cleanup's own uuid, so that a
// later cleanup of the same plan is a task of its own while a repeated call is not.
func (c *Client) EnqueuePlanCleanup(ctx context.Context, planUUID, run string) error {
	t := asynq.NewTask(TypePlanCleanup, []byte(planUUID))
	_, err := c.c.EnqueueContext(ctx, t, asynq.TaskID("plan-cleanup-"+run), asynq.Queue(QueueRestore),
		asynq.MaxRetry(c.maxRetry), asynq.Timeout(24*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue the cleanup of plan %s: %w", planUUID, err)
	}
	return nil
}

// hostQueuePrefix starts the name of a host's own queue: restore-host-<host uuid>.
const hostQueuePrefix = "restore-host-"

// HostQueue is the queue of jobs that must run on one host (their volumes are on its
// LocalStorage): only workers bound to that host serve it.
func HostQueue(hostUUID string) string { return hostQueuePrefix + hostUUID }

// HostOfQueue is the host a queue belongs to, or "" for a queue of no host.
func HostOfQueue(queue string) string {
	h, ok := strings.CutPrefix(queue, hostQueuePrefix)
	if !ok {
		return ""
	}
	return h
}

// HostTaskID is the task id of a job handed to its host's queue.
func HostTaskID(jobUUID, hostUUID string) string { return jobUUID + "@" + hostUUID }

// EnqueueRestoreOnHost hands a job over to its host's queue, where a worker bound to the
// host resumes it from its checkpoint. Handing the same job over twice is harmless.
func (c *Client) EnqueueRestoreOnHost(ctx context.Context, jobUUID, hostUUID string, deadline time.Time) error {
	t := asynq.NewTask(TypeRestore, []byte(jobUUID))
	_, err := c.c.EnqueueContext(ctx, t,
		asynq.TaskID(HostTaskID(jobUUID, hostUUID)), asynq.Queue(HostQueue(hostUUID)), asynq.MaxRetry(c.maxRetry),
		asynq.Deadline(deadline.Add(2*time.Minute)))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("hand restore %s over to host %s: %w", jobUUID, hostUUID, err)
	}
	return nil
}

// EnqueueTakeOver queues a run of a job whose worker died, on the queue its runs come from,
// under taskID (the take-over's claim on the job's lock names it). The job's own task is
// still held by the dead worker's lease; when asynq recovers it later, it finds the job
// running here or ended.
func (c *Client) EnqueueTakeOver(ctx context.Context, jobUUID, queueName, taskID string, deadline time.Time) error {
	if queueName == "" {
		queueName = QueueRestore
	}
	t := asynq.NewTask(TypeRestore, []byte(jobUUID))
	_, err := c.c.EnqueueContext(ctx, t, asynq.TaskID(taskID), asynq.Queue(queueName), asynq.MaxRetry(c.maxRetry),
		asynq.Deadline(deadline.Add(2*time.Minute)))
	if err != nil {
		return fmt.Errorf("enqueue the take-over of %s: %w", jobUUID, err)
	}
	return nil
}

// HostsServed lists the hosts whose queue at least one live worker serves (asynq's server
// heartbeats, which expire within seconds of a worker's death).
func HostsServed(in *asynq.Inspector) (map[string]bool, error) {
	servers, err := in.Servers()
	if err != nil {
		return nil, err
	}
	served := map[string]bool{}
	for _, s := range servers {
		for q := range s.Queues {
			if h := HostOfQueue(q); h != "" {
				served[h] = true
			}
		}
	}
	return served, nil
}

// TakeBackFromHost deletes a job's task from its host's queue if no worker has started it:
// taken reports whether the task is gone (deleted now, or never there), so that nothing
// will run it; false means a worker of the host runs it.
func TakeBackFromHost(in *asynq.Inspector, jobUUID, hostUUID string) (taken bool, err error) {
	err = in.DeleteTask(HostQueue(hostUUID), HostTaskID(jobUUID, hostUUID))
	switch {
	case err == nil, errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return true, nil
	case strings.Contains(err.Error(), "active"):
		return false, nil
	}
	return false, err
}

// EnqueueWebHook queues the delivery of a finished job's web hook. The task id is derived
// from the job and kept for a day after delivery, so the hook is posted once even if the
// job's completion is handled twice.
func (c *Client) EnqueueWebHook(ctx context.Context, jobUUID string) error {
	t := asynq.NewTask(TypeWebHook, []byte(jobUUID))
	_, err := c.c.EnqueueContext(ctx, t, asynq.TaskID("webhook-"+jobUUID), asynq.Queue(QueueRestore),
		asynq.MaxRetry(WebHookTries-1), asynq.Timeout(30*time.Second), asynq.Retention(24*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue web hook of %s: %w", jobUUID, err)
	}
	return nil
}

// EnqueuePlanWebHook queues the delivery of a finished plan's web hook, once per plan end.
func (c *Client) EnqueuePlanWebHook(ctx context.Context, planUUID string) error {
	t := asynq.NewTask(TypePlanWebHook, []byte(planUUID))
	_, err := c.c.EnqueueContext(ctx, t, asynq.TaskID("plan-webhook-"+planUUID+"-"+fmt.Sprint(time.Now().Unix())),
		asynq.Queue(QueueRestore), asynq.MaxRetry(WebHookTries-1), asynq.Timeout(30*time.Second))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue web hook of plan %s: %w", planUUID, err)
	}
	return nil
}

// ServerConfig sizes a worker server.
type ServerConfig struct {
	Concurrency int
	// TaskCheckInterval is how long an idle worker sleeps between polls of an empty queue;
	// it is the floor on pick-up latency for a new job (see docs/architecture.md, "Synchronous wait").
	TaskCheckInterval time.Duration
	ShutdownTimeout   time.Duration
	// Hosts this worker is bound to: it also serves their queues, ahead of the shared one.
	Hosts []string
}

// queues are the shared restore queue and the queues of the worker's hosts, which weigh
// more: a host's own jobs can run nowhere else.
func queues(hosts []string) map[string]int {
	q := map[string]int{QueueRestore: 1}
	for _, h := range hosts {
		q[HostQueue(h)] = 3
	}
	return q
}

// IsFailure tells asynq which errors count against a task's retries: a crashed worker
// (expired lease) and a busy job do not, so crashes never archive a healthy job.
func IsFailure(err error) bool {
	return !errors.Is(err, asynq.ErrLeaseExpired) && !errors.Is(err, ErrBusy)
}

// RetryDelay resumes a crashed job at once, a busy one shortly (one running on another
// worker every TakenOverDelay), retries web hooks every 2 s,
// and backs off exponentially (1 s doubling to 30 s, with jitter) on transient errors.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	switch {
	case t != nil && (t.Type() == TypeWebHook || t.Type() == TypePlanWebHook):
		return WebHookInterval
	case errors.Is(err, asynq.ErrLeaseExpired):
		return 0
	case errors.Is(err, ErrElsewhere):
		return TakenOverDelay/2 + rand.N(TakenOverDelay)
	case errors.Is(err, ErrBusy):
		return time.Second + rand.N(2*time.Second)
	}
	d := time.Second << min(n, 5)
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

// NewServer builds the asynq server that runs restore tasks.
func NewServer(rdb redis.UniversalClient, cfg ServerConfig, log *slog.Logger) *asynq.Server {
	return asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:       cfg.Concurrency,
		Queues:            queues(cfg.Hosts),
		TaskCheckInterval: cfg.TaskCheckInterval,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		IsFailure:         IsFailure,
		RetryDelayFunc:    RetryDelay,
		Logger:            logAdapter{log},
		LogLevel:          asynq.ErrorLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			// A busy job comes back by design; a SkipRetry job has ended and was logged by
			// the pipeline with its ZStack error.
			if errors.Is(err, ErrBusy) || errors.Is(err, asynq.SkipRetry) {
				return
			}
			retried, _ := asynq.GetRetryCount(ctx)
			maxRetry, _ := asynq.GetMaxRetry(ctx)
			log.Warn("restore task returned an error", "job", string(t.Payload()), "retried", retried, "maxRetry", maxRetry, "err", err)
		}),
	})
}

// Inspector returns asynq's inspector over rdb (queue metrics, task deletion).
func Inspector(rdb redis.UniversalClient) *asynq.Inspector {
	return asynq.NewInspectorFromRedisClient(rdb)
}

// RetriesLeft reports whether asynq will run this task again if the handler fails now.
func RetriesLeft(ctx context.Context) bool {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return !ok1 || !ok2 || retried < maxRetry
}

// logAdapter routes asynq's logs to slog.
type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a logAdapter) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a logAdapter) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a logAdapter) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a logAdapter) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq", "fatal", true)
}
